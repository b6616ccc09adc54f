"""The main comparison: test top-1 and ECE of the contrastive model (linear eval) and of CE, with the
compute each spent and the rule that selected each model."""

from pipeline.report.inputs import Inputs
from pipeline.report.markdown import Section, distinct, label, not_run, seeds_of, stat, table


def main_section(inputs: Inputs, *, dataset: str, encoder: str, views: int) -> Section:
    """`views`: pretraining views per image, for a pretrain_supcon.json that does not record it."""
    rows = [
        [f"{label(inputs.method)} (linear eval)", *scores(inputs.supcon), seeds_of(inputs.supcon), supcon_compute(inputs, views), probe_rule(inputs.supcon)],
        ["cross-entropy", *scores(inputs.ce), seeds_of(inputs.ce), distinct(compute(run, 1) for run in inputs.ce.values()), ce_rule(inputs.ce)],
    ]
    header = ["method", "test top-1 (%)", "test ECE", "seeds", "compute (images × views × epochs)", "model selection"]
    intro = f"{dataset}, {encoder}, test split; mean ± std (ddof=1) over seeds, n seeds."
    return ["## Main comparison", "", intro, "", *table(header, rows)], {}


def scores(runs: dict[int, dict]) -> list[str]:
    return [stat([r["test/top1"] for r in runs.values()], 100, 2), stat([r["test/ece"] for r in runs.values()], 1, 4)]


def compute(run: dict, views: int) -> str:
    if "train_images" not in run or "epochs" not in run:
        return "not recorded"
    images, epochs = int(run["train_images"]), int(run["epochs"])
    return f"{images:,} × {views} × {epochs} = {images * views * epochs:,}"


def supcon_compute(inputs: Inputs, views: int) -> str:
    if inputs.pretrain:
        # Views are not in pretrain_supcon.json; params.yaml is what that run was given.
        pretrain = "pretraining " + distinct(compute(run, int(run.get("views", views))) for run in inputs.pretrain.values())
    else:
        pretrain = f"pretraining: {not_run('pretrain_supcon')}"
    return f"{pretrain}; probe {distinct(compute(run, 1) for run in inputs.supcon.values())} on frozen features"


# A run without best_epoch had no val split to select on (the presets' protocol: data.val_fraction 0).
NO_VAL = "no val split, so no selection"


def probe_rule(runs: dict[int, dict]) -> str:
    if all("best_epoch" in r for r in runs.values()):
        return "probe: best val top-1 epoch (" + distinct(f"epoch {r['best_epoch']} of {r.get('epochs', '?')}" for r in runs.values()) + "); encoder: final pretraining epoch"
    return f"probe: final epoch ({final_epochs(runs)}; {NO_VAL}); encoder: final pretraining epoch"


def ce_rule(runs: dict[int, dict]) -> str:
    if all("best_epoch" in r for r in runs.values()):
        return "selected on val: " + distinct(f"epoch {r['best_epoch']} of {r.get('epochs', '?')}" for r in runs.values())
    return f"final epoch ({final_epochs(runs)}; {NO_VAL})"


def final_epochs(runs: dict[int, dict]) -> str:
    return distinct(str(r.get("epochs", "?")) for r in runs.values())

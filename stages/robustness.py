"""Stage `robustness`: the SupCon model (encoder + linear probe) and the CE model on the corrupted test set.

One run per training seed, on that seed's models: `python -m stages.robustness [--seed S]`
(dvc.yaml: robustness@<seed>); the corrupted images are the same for every seed.

Top-1 error per corruption and severity, the clean error, CE / relative CE and their means (mCE,
relative mCE), and top-1 and ECE against severity (the paper's Table 6 / Figure 6), for both
models. The CE normaliser is AlexNet's published ImageNet-C errors on the released ImageNet-C;
on every other set it is this pipeline's own CE model, whose CE is then 100 by construction.
"""

import csv
import io

from pipeline import atomic, checkpoint, environment, figures, robustness
from pipeline.config import Params
from pipeline.corruption.score import score_corrupted
from pipeline.corruption.store import CorruptedSet, open_corrupted
from pipeline.errors import UserError
from pipeline.saved_models import load_ce_classifier, load_probe_classifier
from stages import common, paths
from stages.cli import run_seeded_stage

STAGE = "robustness"
ALEXNET = "AlexNet's ImageNet-C errors (Hendrycks & Dietterich, ICLR 2019)"
OWN_CE = "this pipeline's CE model (train_ce): its CE and relative CE are 100 by construction"


def score(params: Params, seed: int) -> None:
    device = common.runtime(params)
    data = common.load_data(params)
    corrupted = open_corrupted(paths.corrupted(params.data.dataset), data)
    checkpoints = {name: paths.model_dir(name, seed) / checkpoint.LAST for name in ("supcon", "linear", "ce")}
    classifiers = {
        "supcon": load_probe_classifier(checkpoints["supcon"], paths.model_dir("linear", seed), data, device),
        "ce": load_ce_classifier(paths.model_dir("ce", seed), data, device),
    }
    scored_runs = {f"{name}_run_id": checkpoint.load(path).get("mlflow_run_id") or "" for name, path in checkpoints.items()}
    env = environment.run_environment(device)
    with common.tracked_run(params, env, stage=STAGE, method=f"{params.supcon.method}-vs-ce", seed=seed, resume=None, extra_tags=scored_runs) as run:
        scores = {name: score_corrupted(model, corrupted, device=device, batch_size=params.robustness.batch_size, name=name) for name, model in classifiers.items()}
        metrics = {"mlflow_run_id": run.run_id, **_report(scores, corrupted), "scored_runs": scored_runs, "environment": {**env, "machine": environment.machine_key(env)}}
        _write(run, metrics, params.supcon.method, seed)


def _report(scores: dict, corrupted: CorruptedSet) -> dict:
    levels = corrupted.severities
    if corrupted.source == "imagenet-c":
        known = [name for name in corrupted.corruptions if name in robustness.ALEXNET_IMAGENET_C_ERRORS]
        baseline, described = (robustness.alexnet_baseline(known), robustness.ALEXNET_CLEAN_ERROR), ALEXNET
    else:
        baseline, described = robustness.errors_of(robustness.model_report(scores["ce"], levels, None)), OWN_CE
    try:
        ce = robustness.model_report(scores["ce"], levels, baseline)
        supcon = robustness.model_report(scores["supcon"], levels, baseline)
    except ValueError as err:  # a baseline no corruption changes: CE ratios are undefined
        raise UserError(
            f"robustness: {err} ({described}); the baseline's errors are unchanged by a corruption, which a trained "
            "model on enough images (robustness.max_images) does not show"
        ) from None
    note = {} if tuple(levels) == robustness.SEVERITIES else {"mCE_note": "CE and mCE need all five severities; only some were scored"}
    corrupted_top1 = {f"{name}/corrupted_top1": _mean([row["top1"] for level, row in report["by_severity"].items() if level != 0]) for name, report in (("supcon", supcon), ("ce", ce))}
    return {
        **corrupted_top1,
        "source": corrupted.source, "corruptions": list(corrupted.corruptions), "severities": list(levels),
        "images_per_cell": corrupted.num_images, "baseline": described, **note,
        "supcon": supcon, "ce": ce, "scored_images_per_s": {name: s["images_per_s"] for name, s in scores.items()},
    }  # fmt: skip


def _write(run, metrics: dict, method: str, seed: int) -> None:
    metrics_path = paths.metrics_file(paths.seeded(STAGE, seed))
    atomic.write_json(metrics_path, metrics)
    atomic.write_text(paths.plot_file(paths.seeded("robustness_severity", seed)), _severity_csv(metrics))
    atomic.write_text(paths.plot_file(paths.seeded("robustness_corruptions", seed)), _corruption_csv(metrics))
    summary = {f"{model}/{key}": metrics[model][key] for model in ("supcon", "ce") for key in ("mCE", "relative_mCE", "clean_error") if key in metrics[model]}
    for model in ("supcon", "ce"):
        for level, row in metrics[model]["by_severity"].items():
            summary.update({f"{model}/top1_severity_{level}": row["top1"], f"{model}/ece_severity_{level}": row["ece"]})
    run.log_metrics(summary)
    run.log_artifact(metrics_path, "metrics")
    for name, figure in (("severity", figures.robustness_by_severity(metrics, method)), ("corruptions", figures.errors_by_corruption(metrics, method))):
        run.log_figure(figure, f"robustness/{name}.png")
        figures.close(figure)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if "severity" not in k)
    print(f"{STAGE} (seed {seed}): {metrics['source']} ({metrics['images_per_cell']} images per cell), baseline {metrics['baseline']}: {shown}")


def _severity_csv(metrics: dict) -> str:
    rows = [["severity", "supcon_top1", "ce_top1", "supcon_ece", "ce_ece"]]
    for level in metrics["supcon"]["by_severity"]:
        supcon, ce = metrics["supcon"]["by_severity"][level], metrics["ce"]["by_severity"][level]
        rows.append([level, supcon["top1"], ce["top1"], supcon["ece"], ce["ece"]])
    return _csv(rows)


def _corruption_csv(metrics: dict) -> str:
    """Mean error over the scored severities per corruption, both models."""
    rows = [["corruption", "supcon_error", "ce_error"]]
    for name in metrics["corruptions"]:
        rows.append([name, _mean(metrics["supcon"]["errors"][name]), _mean(metrics["ce"]["errors"][name])])
    return _csv(rows)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _csv(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def main() -> None:
    run_seeded_stage(score, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()

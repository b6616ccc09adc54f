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
from pipeline.config import COMMON_CORRUPTIONS, Params
from pipeline.corruption.score import score_corrupted
from pipeline.corruption.store import CorruptedSet, open_corrupted
from pipeline.saved_models import check_probe_encoder, finished_checkpoint, load_ce_classifier, load_probe_classifier
from stages import common, paths
from stages.cli import run_seeded_stage

STAGE = "robustness"
ALEXNET = "AlexNet's ImageNet-C errors (Hendrycks & Dietterich, ICLR 2019)"
OWN_CE = "this pipeline's CE model (train_ce): its CE and relative CE are 100 by construction"


# The stage that writes each scored checkpoint, as `dvc repro` names it.
TRAINED_BY = {"supcon": "pretrain_supcon", "linear": "linear_eval", "ce": "train_ce"}


def score(params: Params, seed: int) -> None:
    states = _finished_models(params, seed)  # before anything is read or written
    device = common.runtime(params)
    data = common.load_data(params)
    corrupted = open_corrupted(paths.corrupted(params.data.dataset), data, params.robustness.released_root)
    classifiers = {
        "supcon": load_probe_classifier(paths.model_dir("supcon", seed) / checkpoint.LAST, paths.model_dir("linear", seed), data, device),
        "ce": load_ce_classifier(paths.model_dir("ce", seed), data, device),
    }
    scored_runs = {f"{name}_run_id": state.get("mlflow_run_id") or "" for name, state in states.items()}
    env = environment.run_environment(device)
    with common.tracked_run(params, env, stage=STAGE, method=f"{params.supcon.method}-vs-ce", seed=seed, resume=None, extra_tags=scored_runs) as run:
        scores = {name: score_corrupted(model, corrupted, device=device, batch_size=params.robustness.batch_size, name=name) for name, model in classifiers.items()}
        metrics = {"mlflow_run_id": run.run_id, **_report(scores, corrupted), "scored_runs": scored_runs, "environment": {**env, "machine": environment.machine_key(env)}}
        _write(run, metrics, params.supcon.method, seed)


def _finished_models(params: Params, seed: int) -> dict[str, dict]:
    """The last.pt of SupCon, its probe and CE for `seed`, each after all its epochs, the probe
    fitted on this very encoder; otherwise one line naming the file and the stage to rerun."""
    epochs = {"supcon": params.supcon.epochs, "linear": params.linear.epochs, "ce": params.ce.epochs}
    path = {name: paths.model_dir(name, seed) / checkpoint.LAST for name in TRAINED_BY}
    rerun = {name: f"`dvc repro {stage}@{seed}`" for name, stage in TRAINED_BY.items()}
    states = {name: finished_checkpoint(path[name], name, epochs=epochs[name], rerun=rerun[name]) for name in TRAINED_BY}
    check_probe_encoder(states["linear"], path["linear"], path["supcon"], rerun["linear"])
    return states


def _report(scores: dict, corrupted: CorruptedSet) -> dict:
    levels = corrupted.severities
    if corrupted.source == "imagenet-c":
        known = [name for name in corrupted.corruptions if name in robustness.ALEXNET_IMAGENET_C_ERRORS]
        baseline, described = (robustness.alexnet_baseline(known), robustness.ALEXNET_CLEAN_ERROR), ALEXNET
    else:
        baseline, described = robustness.errors_of(robustness.model_report(scores["ce"], levels, None)), OWN_CE
    ce = robustness.model_report(scores["ce"], levels, baseline)
    supcon = robustness.model_report(scores["supcon"], levels, baseline)
    note = _mce_note(corrupted, "mCE" in supcon) | _undefined_note(supcon, described)
    corrupted_top1 = {f"{name}/corrupted_top1": _mean([row["top1"] for level, row in report["by_severity"].items() if level != 0]) for name, report in (("supcon", supcon), ("ce", ce))}
    return {
        **corrupted_top1,
        "source": corrupted.source, "corruptions": list(corrupted.corruptions), "severities": list(levels),
        "images_per_cell": corrupted.num_images, "baseline": described, **note,
        "supcon": supcon, "ce": ce, "scored_images_per_s": {name: s["images_per_s"] for name, s in scores.items()},
    }  # fmt: skip


def _mce_note(corrupted: CorruptedSet, computed: bool) -> dict:
    """Why the mCE is missing or not comparable with published ones: it needs all five severities,
    and published mCEs average the 15 common corruptions (mCE_missing_corruptions names the absent)."""
    if tuple(corrupted.severities) != robustness.SEVERITIES:
        return {"mCE_note": "CE and mCE need all five severities; only some were scored"}
    missing = [name for name in COMMON_CORRUPTIONS if name not in corrupted.corruptions]
    if not computed or not missing:
        return {}
    averaged = len(COMMON_CORRUPTIONS) - len(missing)
    note = f"mCE averages {averaged} of the {len(COMMON_CORRUPTIONS)} common corruptions (missing: {', '.join(missing)}): not comparable with published mCEs"
    return {"mCE_note": note, "mCE_missing_corruptions": missing}


def _undefined_note(report: dict, described: str) -> dict:
    """Say which CE ratios are undefined (the baseline's errors do not move, or are zero) and so
    which means are missing; the scores themselves are kept and reported."""
    undefined = report.get("undefined") or {}
    if not undefined:
        return {}
    named = "; ".join(f"{key} of {', '.join(names)}" for key, names in undefined.items())
    return {"undefined_note": f"undefined against the baseline ({described}): {named}; its mean is not reported"}


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
    note = f"; {metrics['mCE_note']}" if "mCE_missing_corruptions" in metrics else ""
    note += f"; {metrics['undefined_note']}" if "undefined_note" in metrics else ""
    print(f"{STAGE} (seed {seed}): {metrics['source']} ({metrics['images_per_cell']} images per cell), baseline {metrics['baseline']}: {shown}{note}")


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

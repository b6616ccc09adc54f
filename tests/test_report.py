"""The report: its claims (pipeline.report.claims) and the `report` stage in-process on fake metrics
files (metrics/seeds/<seed>/, metrics/reduced/<cell>). The verdict rule itself: tests/test_verdicts.py."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.errors import UserError
from pipeline.report.verdicts import DID_NOT_HOLD, HELD, NOT_ENOUGH

REPO = Path(__file__).resolve().parents[1]

# --- the stage, on fake metrics files -----------------------------------------------------------


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def robustness_run(supcon_mce: float, ce_mce: float) -> dict:
    def model(top1: float, ece: float, mce: float) -> dict:
        levels = {str(s): {"top1": top1 - 0.1 * s, "ece": ece + 0.01 * s} for s in range(6)}
        return {"clean_error": 1 - top1, "errors": {"fog": [1 - top1 + 0.1 * s for s in range(1, 6)]}, "by_severity": levels, "mCE": mce, "relative_mCE": mce + 5, "CE": {"fog": mce}}

    return {"source": "generated", "baseline": "this pipeline's CE model (train_ce)", "images_per_cell": 20, "supcon": model(0.86, 0.007, supcon_mce), "ce": model(0.85, 0.037, ce_mce)}


REDUCED = {  # fraction -> (SupCon top-1 per seed, CE top-1 per seed)
    0.01: ([0.60, 0.61, 0.62], [0.50, 0.51, 0.52]),  # SupCon clearly ahead: held
    0.05: ([0.70, 0.71, 0.72], [0.75, 0.76, 0.77]),  # CE clearly ahead: did not hold
    0.1: ([0.800, 0.810, 0.790], [0.805, 0.795, 0.815]),  # paired differences -0.005, 0.015, -0.025: interval across 0
}


def write_reduced(root: Path) -> None:
    for fraction, per_method in REDUCED.items():
        for method, values in zip(("supcon", "ce"), per_method):
            for seed, top1 in enumerate(values):
                budget = {"steps": 100, "epochs": 20, "batch_size": 16, "images_seen": 25600, **({"probe_epochs": 10} if method == "supcon" else {})}
                cell = {"cell": f"{fraction}-{method}-{seed}", "fraction": fraction, "method": method, "seed": seed, "train_images": int(54000 * fraction),
                        "test/top1": top1, "test/ece": 0.05, "best_epoch": 20, "budget": budget}  # fmt: skip
                write(root / f"metrics/reduced/{method}-{fraction}-seed{seed}.json", cell)


def write_long_tail(root: Path) -> None:
    """Long-tailed cells at params.yaml's factors (10, 100), three seeds, both methods."""
    for factor in (10, 100):
        for method, top1 in (("supcon", 0.80), ("ce", 0.78)):
            for seed in range(3):
                cell = {"cell": f"{method}-{factor}-seed{seed}", "factor": factor, "method": method, "seed": seed, "test/top1": top1 - factor / 1000,
                        "test/top1_per_class": [0.9] * 4 + [0.8] * 3 + [0.6] * 3, "train_per_class": [2700 // (1 + c) for c in range(10)]}  # fmt: skip
                write(root / f"metrics/long_tail/{method}-{factor}-seed{seed}.json", cell)


def write_sweeps(root: Path) -> None:
    trials = [{"params": {"temperature": t}, "objective": o} for t, o in ((0.5, 0.80), (0.05, 0.82), (0.1, 0.85))]
    newest = {"space": "temperature", "mlflow_run_id": "sweep-new", "date": "2025-02-01T10:00:00", "commit": "abc123", "trials": trials, "objective": "val/knn_top1", "best": {"params": {"temperature": 0.1}, "objective": 0.85}}
    older = {**newest, "mlflow_run_id": "sweep-old", "date": "2025-01-01T10:00:00", "best": {"params": {"temperature": 0.5}, "objective": 0.9}}
    write(root / "sweeps/temperature/summary.json", newest)
    write(root / "sweeps/a-older/summary.json", older)  # first by name: newest is by recorded date


def write_plots(root: Path) -> None:
    (root / "plots/seeds/0").mkdir(parents=True, exist_ok=True)
    (root / "plots/seeds/0/pretrain_supcon.csv").write_text("epoch,train_loss,train_lr,val_knn_top1\n1,5.6,0.1,\n2,5.2,0.5,0.7\n3,5.0,0.2,0.8\n")
    (root / "plots/seeds/0/train_ce.csv").write_text("epoch,train_loss,val_top1\n1,1.3,0.6\n2,0.9,0.7\n")
    (root / "plots/seeds/0/linear_eval.csv").write_text("epoch,train_loss,val_top1\n1,0.5,0.84\n2,0.4,0.85\n")


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    """One sqlite store for the module: creating its tables takes seconds."""
    import mlflow

    yield f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    mlflow.set_tracking_uri(None)


@pytest.fixture
def project(tmp_path, monkeypatch, mlflow_uri):
    """A folder with the repository's params.yaml and the required main-comparison metrics."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    return tmp_path


def set_params(root: Path, seeds: list[int], fractions: list[float]) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["run"]["seeds"], params["reduced"]["fractions"] = seeds, fractions
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def write_main(root: Path, spread: float = 0.0, seeds: tuple[int, ...] = (0,)) -> None:
    """The main comparison per seed: SupCon 86.35 and CE 85.81 on average, each seed `spread` apart."""
    for seed in seeds:
        shift = spread * (seed - (len(seeds) - 1) / 2)
        write(root / f"metrics/seeds/{seed}/linear_eval.json", {"test/top1": 0.8635 + shift, "test/ece": 0.007021, "test/images": 10000, "method": "supcon", "best_epoch": 29, "train_images": 27000, "epochs": 30, "mlflow_run_id": "probe-run"})
        write(root / f"metrics/seeds/{seed}/train_ce.json", {"test/top1": 0.8581 + shift, "test/ece": 0.037334, "test/images": 10000, "epochs": 6, "train_images": 27000, "mlflow_run_id": "ce-run"})
        write(root / f"metrics/seeds/{seed}/pretrain_supcon.json", {"epochs": 6, "train_images": 27000, "val/knn_top1": 0.877, "mlflow_run_id": "pretrain-run"})


def run_report() -> str:
    from stages import report
    from stages.cli import read_params

    report.report(read_params())
    return Path("reports/summary.md").read_text()


def claim_row(summary: str, claim: str) -> str:
    rows = [line for line in summary.splitlines() if line.startswith(f"| {claim} |")]
    assert len(rows) == 1, f"no single claims row {claim!r} in:\n{summary}"
    return rows[0]


def test_report_with_every_input_gives_tables_verdicts_figures_and_one_mlflow_run(project, mlflow_uri):
    set_params(project, seeds=[0, 1, 2], fractions=list(REDUCED))
    write_main(project, spread=0.01, seeds=(0, 1, 2))
    write(project / "metrics/seeds/0/robustness.json", robustness_run(95.0, 100.0))
    write_reduced(project)
    write(project / "metrics/reduced/ce-0.5-seed0.json", {"fraction": 0.5, "method": "ce", "seed": 0, "test/top1": 0.1})  # a fraction params no longer lists
    write_long_tail(project)
    write_sweeps(project)
    write_plots(project)

    summary = run_report()

    # main table: values, compute (images x views x epochs) and model selection
    assert "| SupCon (linear eval) | 86.35 ± 1.00 (n=3) | 0.0070 ± 0.0000 (n=3) | 0, 1, 2 |" in summary
    assert "| cross-entropy | 85.81 ± 1.00 (n=3) | 0.0373 ± 0.0000 (n=3) | 0, 1, 2 |" in summary
    assert "pretraining 27,000 × 2 × 6 = 324,000; probe 27,000 × 1 × 30 = 810,000 on frozen features" in summary
    assert "27,000 × 1 × 6 = 162,000" in summary
    assert "best val top-1 epoch (epoch 29 of 30)" in summary and "final epoch (6; no val split, so no selection)" in summary
    # claims: the main comparison's seeds move both methods alike (±1 point) while SupCon is 0.54
    # points ahead on each, so paired by seed it holds; one seed of robustness is not enough; the
    # reduced-data cells have three seeds each; the newest sweep has one seed per trial: it ranks only
    top1 = claim_row(summary, "SupCon (linear eval) top-1 ≥ CE top-1")
    assert "**held**" in top1 and "paired SupCon − CE +0.54 [+0.54, +0.54] points (n=3, 95% t)" in top1
    assert "50%" not in summary  # the stale cell of a fraction params no longer lists
    assert "**held**" in claim_row(summary, "SupCon beats CE with 1% of the labels")
    assert "**did not hold**" in claim_row(summary, "SupCon beats CE with 5% of the labels")
    tenth = claim_row(summary, "SupCon beats CE with 10% of the labels")  # mean -0.5, s 2, ± 4.3027 · 2 / √3 points
    assert "**not enough evidence**: SupCon − CE: mean -0.005" in tenth and "touches or crosses 0" in tenth
    assert "paired SupCon − CE -0.50 [-5.47, +4.47] points (n=3, 95% t)" in tenth
    assert "**not enough evidence**: 1 pair of seeds; 3 needed" in claim_row(summary, "SupCon has a lower mCE than CE")
    temperature = claim_row(summary, "temperature 0.1 is best")
    assert "**not enough evidence**: a one-seed sweep ranks temperatures (best T = 0.1)" in temperature and "sweep-new" in temperature
    # the intro says how verdicts are made, what the interval covers, and how many claims were tested
    assert "95% t-interval of the per-seed paired difference (SupCon minus CE, same training seed" in summary
    assert "not test-set sampling" in summary
    # the widest test-set ± of the six accuracies: CE's 84.81 on 10,000 images, 2 sqrt(.8481 x .1519 / 10,000) = 0.72 points
    assert "test-set ±0.72 points (2 binomial SE, 10,000 images)" in claim_row(summary, "SupCon (linear eval) top-1 ≥ CE top-1")
    assert "The table's 8 claims are judged at once with no multiple-comparison correction: at 95% each, up to about 0.05 × 8 = 0.4 false verdicts" in summary
    assert "reported, no claim" in claim_row(summary, "ECE by severity")
    assert "supcon: ≥ 100 steps, 20 epochs (probe 10), 25,600 images seen; ce: ≥ 100 steps, 20 epochs, 25,600 images seen" in summary
    assert "61.00 ± 1.00 (n=3)" in summary and "51.00 ± 1.00 (n=3)" in summary and "| +10.00 |" in summary
    # robustness and sweep sections name their baseline and run
    assert "Baseline of CE and mCE: this pipeline's CE model (train_ce)" in summary and "| mCE (%; normalised by this pipeline's CE, not AlexNet) | 95.0 (n=1) | 100.0 (n=1) |" in summary
    assert "MLflow run sweep-new, 2025-02-01T10:00:00, commit abc123" in summary
    assert "not run yet" not in summary and "no sweep yet" not in summary
    assert "| 100 | SupCon | 90.00 ± 0.00 (n=3) | 80.00 ± 0.00 (n=3) | 60.00 ± 0.00 (n=3) |" in summary  # head, middle, tail thirds
    names = {"accuracy_vs_fraction", "accuracy_vs_imbalance", "robustness_by_severity", "robustness_degradation", "sweep", "training_curves"}
    for name in names:
        assert (project / f"reports/figures/{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"(figures/{name}.png)" in summary

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("supcon-pipeline").experiment_id], "tags.stage = 'report'")
    assert len(runs) == 1 and runs[0].data.tags["claim/reduced_0.01"] == HELD
    logged = {item.path for item in client.list_artifacts(runs[0].info.run_id, "report")}
    assert logged == {"report/summary.md", "report/figures"}
    assert {item.path for item in client.list_artifacts(runs[0].info.run_id, "report/figures")} == {f"report/figures/{n}.png" for n in names}


def test_report_reads_only_the_seeds_params_lists_and_says_what_was_not_run(project):
    set_params(project, seeds=[0, 1, 2], fractions=[0.01])
    write(project / "metrics/seeds/3/linear_eval.json", {"test/top1": 0.1, "test/ece": 0.01, "method": "supcon"})  # a seed params no longer lists
    for seed, (supcon, ce) in enumerate(((0.90, 0.80), (0.91, 0.81), (0.92, 0.82))):
        write(project / f"metrics/seeds/{seed}/linear_eval.json", {"test/top1": supcon, "test/ece": 0.01, "method": "supcon", "best_epoch": 10 + seed, "train_images": 100, "epochs": 30})
        write(project / f"metrics/seeds/{seed}/train_ce.json", {"test/top1": ce, "test/ece": 0.02, "epochs": 6, "train_images": 100, "best_epoch": 5})
    stale = project / "reports/figures/sweep.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"a figure of a sweep that is gone")

    summary = run_report()

    assert "| SupCon (linear eval) | 91.00 ± 1.00 (n=3) | 0.0100 ± 0.0000 (n=3) | 0, 1, 2 |" in summary
    assert "| cross-entropy | 81.00 ± 1.00 (n=3) |" in summary and "86.35" not in summary
    assert "**held**" in claim_row(summary, "SupCon (linear eval) top-1 ≥ CE top-1")
    assert "paired SupCon − CE +10.00 [+10.00, +10.00] points (n=3, 95% t)" in claim_row(summary, "SupCon (linear eval) top-1 ≥ CE top-1")
    assert "epoch 10 of 30; epoch 11 of 30; epoch 12 of 30" in summary and "selected on val: epoch 5 of 6" in summary
    for stage in ("reduced_data", "long_tail", "robustness", "pretrain_supcon", "train_ce", "linear_eval"):
        assert f"not run yet: `dvc repro {stage}`" in summary
    assert "no sweep yet: `python -m pipeline.sweep --space temperature`" in summary
    assert "values per seed from `metrics/seeds/<seed>/` (run.seeds: 0, 1, 2)" in summary
    assert not stale.exists() and not list((project / "reports/figures").glob("*.png"))


def test_missing_linear_eval_of_a_seed_names_the_file_and_the_stage(project):
    set_params(project, seeds=[0, 1], fractions=[0.01])
    write_main(project, seeds=(0, 1))
    (project / "metrics/seeds/1/linear_eval.json").unlink()
    with pytest.raises(UserError, match=r"metrics/seeds/1/linear_eval\.json: missing; run `dvc repro linear_eval@1` first"):
        run_report()
    assert not (project / "reports").exists()


def test_a_metrics_file_without_a_needed_key_is_a_user_error(project):
    write_main(project)
    write(project / "metrics/seeds/0/train_ce.json", {"test/ece": 0.03})
    with pytest.raises(UserError, match=r"metrics/seeds/0/train_ce\.json: has no test/top1"):
        run_report()


def test_claims_about_supcon_are_not_judged_on_simclr_runs_or_on_one_sided_cells():
    from pipeline.report import Inputs
    from pipeline.report.claims import claim_top1, claims_reduced

    runs = {s: {"test/top1": v, "test/ece": 0.01, "method": "simclr"} for s, v in enumerate((0.90, 0.91, 0.92))}
    ce = {s: {"test/top1": v, "test/ece": 0.02} for s, v in enumerate((0.80, 0.81, 0.82))}
    cells = [{"fraction": 0.5, "method": "ce", "seed": s, "test/top1": 0.7} for s in range(3)]
    inputs = Inputs(supcon=runs, ce=ce, pretrain={}, robustness={}, reduced=cells, sweeps=[], curves={})
    top1 = claim_top1(inputs)
    assert (top1.verdict, top1.reason) == (NOT_ENOUGH, "this run's contrastive method is simclr; the claim is about supcon")
    assert top1.measured.startswith("SimCLR 91.00 ± 1.00 (n=3) vs CE 81.00 ± 1.00 (n=3)")
    (half,) = claims_reduced(inputs)  # a fraction with CE cells only
    assert half.verdict == NOT_ENOUGH and half.measured.startswith("SupCon — vs CE 70.00 ± 0.00 (n=3)")


def test_temperature_claim_ranks_from_a_one_seed_sweep_and_judges_only_confirmation_runs():
    from pipeline.report import Inputs
    from pipeline.report.claims import claim_temperature

    trials = [{"params": {"supcon.temperature": t}, "objective": o, "state": s} for t, o, s in ((0.1, 0.8467, "finished"), (0.3684, 0.8767, "finished"), (0.83, 0.81, "stopped early"))]
    sweep = {"space": "temperature", "trials": trials, "best": {"params": {"supcon.temperature": 0.3684}, "objective": 0.8767}, "mlflow_run_id": "sweep-run"}

    def judged(confirmation: dict | None):
        summary = {**sweep, **({"confirmation": confirmation} if confirmation else {})}
        return claim_temperature(Inputs(supcon={}, ce={}, pretrain={}, robustness={}, reduced=[], sweeps=[(Path("sweeps/temperature/summary.json"), summary)], curves={}))

    # a 3-point lead in a one-seed sweep is a ranking, not a verdict
    ranked = judged(None)
    assert ranked.verdict == NOT_ENOUGH and ranked.measured.startswith("best T = 0.3684 over 3 trials (sweeps/temperature, MLflow run sweep-run)")
    assert ranked.reason == "a one-seed sweep ranks temperatures (best T = 0.3684); confirming needs ≥ 3 seeds per temperature at full length (`--confirm`)"
    # confirmation runs, with JSON's string keys: T = 0.3684 ahead by 0.2 points on each of 3 seeds (within 0.5);
    # T = 0.83 was stopped early and would beat 0.1 by 2 points: it does not count
    reference = {"0": 0.850, "1": 0.860, "2": 0.855}
    within = {seed: v + 0.002 for seed, v in reference.items()}
    beyond = {seed: v + 0.02 for seed, v in reference.items()}
    confirmed = judged({"val_top1": {"0.1": reference, "0.3684": within, "0.83": beyond}, "stopped": [0.83]})
    assert confirmed.verdict == HELD and "T = 0.3684 − T = 0.1: mean +0.002" in confirmed.reason
    assert confirmed.measured.endswith("; confirmed at T = 0.1, 0.3684, 0.83")
    assert judged({"val_top1": {"0.1": reference, "0.3684": beyond}, "stopped": []}).verdict == DID_NOT_HOLD
    assert judged({"val_top1": {"0.1": reference, "0.3684": {"0": 0.9}}}).verdict == NOT_ENOUGH  # one seed of 0.3684


def test_without_a_val_split_the_selection_rules_say_final_epoch_and_name_no_file():
    """The presets' protocol (data.val_fraction 0): no best_epoch in either metrics file."""
    from pipeline.report.main_table import ce_rule, probe_rule

    runs = {0: {"epochs": 90}, 1: {"epochs": 90}}
    assert probe_rule(runs) == "probe: final epoch (90; no val split, so no selection); encoder: final pretraining epoch"
    assert ce_rule(runs) == "final epoch (90; no val split, so no selection)"
    assert probe_rule({0: {"epochs": 30, "best_epoch": 29}}) == "probe: best val top-1 epoch (epoch 29 of 30); encoder: final pretraining epoch"


def test_the_test_set_noise_is_two_binomial_standard_errors_of_the_widest_accuracy():
    from pipeline.report.markdown import test_set_noise

    # 2 sqrt(0.5 x 0.5 / 10,000) = 0.01: 1.00 point; 2 sqrt(0.9 x 0.1 / 10,000) = 0.6 points
    assert test_set_noise([{"test/top1": 0.9, "test/images": 10000}, {"test/top1": 0.5, "test/images": 10000}]) == "; test-set ±1.00 points (2 binomial SE, 10,000 images)"
    assert test_set_noise([{"test/top1": 0.9, "test/images": 10000}, {"test/top1": 0.5}]) == ""  # a file without the count: none shown
    assert test_set_noise([{"test/top1": 0.9, "test/images": 100}, {"test/top1": 0.9, "test/images": 400}]) == ""  # different test sets

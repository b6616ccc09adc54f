"""MLflow's compare page for SupCon against cross-entropy: the linear-eval (SupCon's probe) and
train_ce run of each training seed, side by side. `make mlflow-ui` prints it for the newest runs in
the store; the report links it for the runs its metrics files name.

The address is MLflow 3's own route, `#/compare-runs?runs=[...]&experiments=[...]` (the UI builds
it the same way from its runs table). That route reads only the two lists, so which chart it
opens on cannot be set from the address: pick `test/top1` and `test/ece` in its chart view.
"""

import json
from typing import Any
from urllib.parse import quote

COMPARED_STAGES = ("linear_eval", "train_ce")


def compare_page(base_url: str, experiment_id: str, run_ids: list[str]) -> str:
    runs, experiments = json.dumps(run_ids, separators=(",", ":")), json.dumps([str(experiment_id)])
    return f"{base_url.rstrip('/')}/#/compare-runs?runs={quote(runs)}&experiments={quote(experiments)}"


def recorded_comparison(base_url: str, supcon: dict[int, dict], ce: dict[int, dict]) -> str | None:
    """The compare page of the runs the report reads (each seed's linear_eval, then each seed's
    train_ce metrics), from the MLflow run and experiment ids their metrics files record, so the
    link depends on the committed files only, not on which store this machine has. None when a
    file records no run (tracking off, or written before the experiment id was recorded) or the
    runs are in different experiments."""
    recorded = [by_seed[seed] for by_seed in (supcon, ce) for seed in sorted(by_seed)]
    run_ids = [metrics.get("mlflow_run_id") for metrics in recorded]
    experiments = {metrics.get("mlflow_experiment_id") for metrics in recorded}
    if not recorded or not all(run_ids) or len(experiments) != 1 or not next(iter(experiments)):
        return None
    return compare_page(base_url, next(iter(experiments)), run_ids)


def newest_comparison_runs(client: Any, experiment_id: str) -> list[str]:
    """Run ids of the newest FINISHED run of each compared stage and seed of the main comparison
    (reduced-data cells and sweeps are other stages), SupCon's first, ordered by seed."""
    newest: dict[tuple[str, str], Any] = {}
    for stage in COMPARED_STAGES:
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.stage = '{stage}' and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"], max_results=1000,
        )  # fmt: skip
        for run in found:
            key = (stage, run.data.tags.get("seed", ""))
            newest.setdefault(key, run)  # newest first: keep the first of each seed
    order = sorted(newest, key=lambda key: (COMPARED_STAGES.index(key[0]), _seed_order(key[1])))
    return [newest[key].info.run_id for key in order]


def _seed_order(seed: str) -> tuple[int, str]:
    return (int(seed), "") if seed.isdigit() else (1 << 30, seed)

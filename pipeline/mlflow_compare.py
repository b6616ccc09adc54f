"""MLflow's compare page for SupCon against cross-entropy: the newest linear-eval (SupCon's probe)
and train_ce run of each training seed, side by side (`make mlflow-ui` prints it, the report links
it).

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

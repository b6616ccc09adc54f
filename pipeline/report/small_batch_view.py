"""Small batches and the momentum-key queue: the small_batch cells beside the main SupCon run.

Each cell pretrained SupCon at a small batch with a queue of `queue` keys (0: none) for as many
steps or epochs as the main run (`equal`; pipeline/small_batch.py) and was scored by the same linear
probe. Its seed's main run (pretrain_supcon + linear_eval, the default batch) is the reference
shown beside it. The claim "a momentum-key queue recovers the small-batch loss" is judged per queue
size and budget by the paired rule of pipeline.report.verdicts on (queue - no queue) per seed.
"""

from statistics import fmean

from pipeline.report.claims import Claim
from pipeline.report.inputs import Inputs
from pipeline.report.markdown import Section, distinct, paired, seeds_of, stat, table
from pipeline.report.verdicts import NOT_ENOUGH, Evidence

TITLE = "## Small batches and the momentum-key queue"
EQUAL = ("steps", "epochs")
PAPER = "no figure: the authors' TF README says a memory can stand in for a large batch, unimplemented there"
NONE_LISTED = "no small-batch cells: small_batch.queues lists none (configs/study_small_batch_long_tail.yaml runs them)"


def by_arm(cells: list[dict], equal: str) -> dict[int, dict[int, float]]:
    """queue size -> seed -> test top-1 of the cells kept at `equal` steps or epochs."""
    arms: dict[int, dict[int, float]] = {}
    for cell in cells:
        if cell["equal"] == equal:
            arms.setdefault(int(cell["queue"]), {})[int(cell["seed"])] = float(cell["test/top1"])
    return arms


def claims_small_batch(inputs: Inputs) -> list[Claim]:
    """One claim per queue size > 0 and budget: the queue's cells against the cells without one."""
    claim = "a momentum-key queue recovers the small-batch loss"
    if not inputs.small_batch:
        return [Claim("queue", claim, PAPER, "—", NOT_ENOUGH, NONE_LISTED)]
    batch = distinct(str(cell["batch_size"]) for cell in inputs.small_batch)
    main = {seed: float(run["test/top1"]) for seed, run in inputs.supcon.items()}
    rows = []
    for equal in (e for e in EQUAL if any(cell["equal"] == e for cell in inputs.small_batch)):
        arms = by_arm(inputs.small_batch, equal)
        for queue in sorted(q for q in arms if q > 0):
            evidence = Evidence(arms[queue], arms.get(0, {}), names=(f"batch {batch} + queue", f"batch {batch}"))
            result, reason, interval = evidence.paired()
            if 0 not in arms:
                result, reason = NOT_ENOUGH, f"no batch-{batch} cell without a queue at equal {equal} (small_batch.queues needs 0)"
            measured = (
                f"batch {batch} + {queue:,}-key queue {stat(list(arms[queue].values()), 100, 2)} vs batch {batch} {stat(list(arms.get(0, {}).values()), 100, 2)}; "
                f"default batch (main run) {stat(list(main.values()), 100, 2)}; seeds {seeds_of(arms[queue])} (top-1 %)"
            )
            measured += paired(interval, "queue", 100, 2).replace("queue − CE", "queue − no queue")
            rows.append(Claim(f"queue_{queue}_equal_{equal}", f"{claim} (batch {batch}, {queue:,} keys, equal {equal})", PAPER, measured, result, reason))
    return rows


def small_batch_section(inputs: Inputs) -> Section:
    if not inputs.small_batch:
        return [TITLE, "", NONE_LISTED + "."], {}
    main = {seed: float(run["test/top1"]) for seed, run in inputs.supcon.items()}
    rows = []
    for equal in (e for e in EQUAL if any(cell["equal"] == e for cell in inputs.small_batch)):
        rows.append([f"equal {equal}", "default batch (main run)", *main_budget(inputs), stat(list(main.values()), 100, 2), "—", "—"])
        cells = [cell for cell in inputs.small_batch if cell["equal"] == equal]
        arms = by_arm(cells, equal)
        for queue in sorted(arms):
            at = [cell for cell in cells if int(cell["queue"]) == queue]
            spent = distinct(f"{c['budget']['steps']:,} steps, {c['budget']['epochs']} epochs, {c['budget']['images_seen']:,} images seen" for c in at)
            arm = f"batch {at[0]['batch_size']}" + (f" + {queue:,}-key queue" if queue else "")
            rows.append([f"equal {equal}", arm, str(at[0]["batch_size"]), spent, stat(list(arms[queue].values()), 100, 2), difference(arms[queue], arms.get(0, {})), difference(arms[queue], main)])
    intro = (
        "SupCon pretrained at a small batch, with and without a momentum-key queue (`supcon.memory.momentum`), on the main "
        "stages' train split, for as many optimizer steps (equal steps) or epochs (equal epochs) as the main run at the "
        "default batch; learning rate by the same scaling rule; the same linear probe as linear_eval. Test top-1, mean ± std "
        "over seeds; differences are means of the per-seed paired differences."
    )
    header = ["budget", "arm", "batch", "pretraining (per process)", "test top-1 (%)", "− no queue (points)", "− default batch (points)"]
    return [TITLE, "", intro, "", *table(header, rows)], {}


def main_budget(inputs: Inputs) -> list[str]:
    """The main run's batch and pretraining spend, as its pretrain_supcon.json records them."""
    runs = list(inputs.pretrain.values())
    if not runs:
        return ["?", "pretrain_supcon not read"]
    batch = distinct(str(run.get("batch_size", "?")) for run in runs)
    return [batch, distinct(f"{int(run['train/steps']):,} steps, {int(run['epochs'])} epochs" for run in runs if "train/steps" in run and "epochs" in run) or "not recorded"]


def difference(arm: dict[int, float], reference: dict[int, float]) -> str:
    """Mean per-seed paired difference arm - reference in points, over the seeds both have."""
    shared = sorted(arm.keys() & reference.keys())
    if not shared or arm is reference:
        return "—"
    return f"{100 * fmean(arm[s] - reference[s] for s in shared):+.2f}"

"""What `dvc repro` computes, in optimizer steps and images per stage, and how long that takes at
measured costs: pure arithmetic on the params and the image counts (nothing is timed here).

Every training stage: run.seeds x epochs x (images // batch) steps of batch images each (one
process: batches are per process, and the last partial batch is dropped). Reduced-data cells
and long-tailed cells follow pipeline/reduced.py's budget rule (`budgeted`); a SupCon cell's probe
trains at least linear.epochs; small-batch cells train pipeline/small_batch.py's schedule. Besides training: the kNN monitor's embeddings, the val pass after every CE and
probe epoch, the probe's features, test scoring, corruption generation and robustness scoring.
Not counted: `prepare`, process start-up and MLflow logging, and the kNN search itself
(a matrix product per pass, small beside the embeddings).
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace

from pipeline.config import LinearConfig, Params, TrainingConfig
from pipeline.estimate.counts import Counts
from pipeline.imbalance import kept_per_rank
from pipeline.reduced import budgeted
from pipeline.small_batch import small_batch_config

TRAINING_KINDS = ("supcon", "ce", "linear")
"""Kinds of work priced by timed training steps of that config section."""
INFERENCE, CORRUPTION = "inference", "corruption"
"""Work priced by timed forward passes (eval transform + encoder + a linear layer) and by timed
corruption of test images (CPU, in `processes` processes)."""
RELEASED_IMAGES = {"cifar10-c": 10_000, "cifar100-c": 10_000, "imagenet-c": 50_000}
"""Images per (corruption, severity) cell of each released set."""
GENERATION_MAX_SIZE = 64
"""Side length above which stages/corrupt.py refuses to generate a corrupted set (a release is read instead)."""


@dataclass(frozen=True)
class Work:
    """One row of the estimate: a kind of computation, summed over its runs."""

    stage: str
    kind: str
    """What prices it: a training section (supcon, ce, linear), INFERENCE or CORRUPTION."""
    runs: int
    """Training seeds, or seeds x reduced cells."""
    steps: int
    """Optimizer steps over all runs (0 for inference and corruption)."""
    images: int
    """Images through the computation over all runs: steps x batch when training."""
    processes: int = 1
    """Processes sharing it (corruption generation runs in a pool)."""


def plan(params: Params, counts: Counts, *, corruption_processes: int) -> list[Work]:
    """Every row `dvc repro` computes with these params on datasets of these counts."""
    cells = [*_reduced(params, counts), *_long_tail(params, counts), *_small_batch(params, counts)]
    return [*_main_comparison(params, counts), *cells, *_robustness(params, counts, corruption_processes)]


def predict(work: list[Work], per_image: Mapping[str, float], once: Mapping[str, float] | None = None) -> list[float]:
    """Seconds per row: images x seconds per image of its kind / processes, plus `once[kind]`
    (a start-up cost paid once per row, e.g. the corruption workers' imports)."""
    once = once or {}
    return [row.images * per_image[row.kind] / row.processes + once.get(row.kind, 0.0) for row in work]


def run_steps(config: TrainingConfig, num_items: int) -> int:
    """Optimizer steps of one run of `config` on num_items images (one process, last partial batch dropped)."""
    return config.epochs * (num_items // config.batch_size)


def knn_passes(epochs: int, every: int) -> int:
    """Epochs the kNN monitor runs after: every `every`-th and the last (none for every 0)."""
    if every <= 0:
        return 0
    return epochs // every + (1 if epochs % every else 0)


def probe_inference(config: LinearConfig, num_items: int, val: int, test: int) -> int:
    """Images a linear probe runs through the frozen encoder besides its steps: features of train
    and val once (augmentation none), or val after every epoch (otherwise), then test once."""
    if config.augmentation.policy == "none":
        return num_items + val + test
    return config.epochs * val + test


def _trained(stage: str, kind: str, seeds: int, runs: list[tuple[TrainingConfig, int]]) -> Work:
    """Training rows: each of `runs` (config, images) once per seed."""
    steps = sum(run_steps(config, n) for config, n in runs)
    images = sum(run_steps(config, n) * config.batch_size for config, n in runs)
    return Work(stage, kind, seeds * len(runs), seeds * steps, seeds * images)


def _inference(stage: str, runs: int, images: int) -> Work:
    return Work(stage, INFERENCE, runs, 0, images)


def _main_comparison(params: Params, counts: Counts) -> list[Work]:
    n, seeds, val, test = counts.labelled(params.data.train_fraction), len(params.run.seeds), counts.val, sum(counts.test)
    supcon, ce, linear = params.supcon, params.ce, params.linear
    passes = knn_passes(supcon.epochs, supcon.knn_every)
    # Without val the leave-one-out queries are rows of the bank: only the bank is embedded.
    return [
        _trained("pretrain_supcon", "supcon", seeds, [(supcon, n)]),
        _inference(f"  kNN monitor ({passes} passes)", seeds, seeds * passes * (n + val)),
        _trained("train_ce", "ce", seeds, [(ce, n)]),
        _inference(_eval_label(val), seeds, seeds * (ce.epochs * val + test)),
        _trained("linear_eval", "linear", seeds, [(linear, n)]),
        _inference(_probe_label(linear, val), seeds, seeds * probe_inference(linear, n, val, test)),
    ]


def _eval_label(val: int) -> str:
    return "  val each epoch, test" if val else "  test"


def _probe_label(config: LinearConfig, val: int) -> str:
    return "  features, test" if config.augmentation.policy == "none" else _eval_label(val)


def _reduced(params: Params, counts: Counts) -> list[Work]:
    """The reduced_data matrix: fraction x method x seed, each under the budget rule."""
    return _budgeted_cells("reduced_data", params, counts, [counts.labelled(fraction) for fraction in params.reduced.fractions], params.reduced.methods)


def _long_tail(params: Params, counts: Counts) -> list[Work]:
    """The long_tail matrix: factor x method x seed on the main split made long-tailed, under the
    reduced cells' budget rule."""
    per_class = counts.labelled_per_class(params.data.train_fraction)
    profile = params.data.imbalance.profile
    sizes = []
    for factor in params.long_tail.factors:
        kept = kept_per_rank(max(per_class), len(per_class), factor, profile) if factor <= max(per_class) else [1] * len(per_class)
        sizes.append(sum(min(n, k) for n, k in zip(per_class, kept)))  # index order: class c at rank c
    return _budgeted_cells("long_tail", params, counts, sizes, params.long_tail.methods)


def _budgeted_cells(stage: str, params: Params, counts: Counts, sizes: list[int], methods) -> list[Work]:
    """A matrix of cells of `sizes` train images x `methods` x seed, each under the budget rule."""
    seeds, val, test, reduced = len(params.run.seeds), counts.val, sum(counts.test), params.reduced

    def budget(config: TrainingConfig, n: int) -> TrainingConfig:
        return budgeted(config, num_items=n, steps=reduced.steps, min_epochs=reduced.min_epochs)

    rows = []
    if "supcon" in methods and sizes:
        pretrain = [(budget(params.supcon, n), n) for n in sizes]  # no kNN monitor in cells
        probes = [(_at_least(budget(params.linear, n), params.linear.epochs), n) for n in sizes]
        rows += [
            _trained(f"{stage} supcon", "supcon", seeds, pretrain),
            _trained("  its linear probe", "linear", seeds, probes),
            _inference(_probe_label(params.linear, val), seeds * len(sizes), seeds * sum(probe_inference(c, n, val, test) for c, n in probes)),
        ]
    if "ce" in methods and sizes:
        trained = [(budget(params.ce, n), n) for n in sizes]
        rows += [
            _trained(f"{stage} ce", "ce", seeds, trained),
            _inference(_eval_label(val), seeds * len(sizes), seeds * sum(c.epochs * val + test for c, _ in trained)),
        ]
    return rows


def _small_batch(params: Params, counts: Counts) -> list[Work]:
    """The small_batch matrix: queue x equal x seed, SupCon at small_batch.batch_size for the main
    run's steps or epochs, and the linear probe linear_eval trains. Priced per image as SupCon at its
    own batch: a small batch's and a queue's extra cost per image is not (bench queue_step measures it)."""
    config, seeds, val, test = params.small_batch, len(params.run.seeds), counts.val, sum(counts.test)
    if not config.queues:
        return []
    n = counts.labelled(params.data.train_fraction)
    pretrain = [(small_batch_config(params.supcon, batch_size=config.batch_size, queue=queue, equal=equal), n) for queue in config.queues for equal in config.equal]
    probes = [(params.linear, n)] * len(pretrain)
    return [
        _trained("small_batch supcon", "supcon", seeds, pretrain),
        _trained("  its linear probe", "linear", seeds, probes),
        _inference(_probe_label(params.linear, val), seeds * len(probes), seeds * len(probes) * probe_inference(params.linear, n, val, test)),
    ]


def _at_least(config: TrainingConfig, epochs: int) -> TrainingConfig:
    return replace(config, epochs=max(config.epochs, epochs))


def generation_refused(params: Params, counts: Counts) -> bool:
    """Whether `corrupt` stops: images too large to generate a corrupted set from, and no release named."""
    return params.robustness.released is None and counts.image_size > GENERATION_MAX_SIZE


def _robustness(params: Params, counts: Counts, processes: int) -> list[Work]:
    """corrupt (generation, unless a release is read) and robustness@seed (SupCon's probe and CE
    scored); nothing where corrupt stops (generation_refused)."""
    config, seeds = params.robustness, len(params.run.seeds)
    if generation_refused(params, counts):
        return []
    per_cell = RELEASED_IMAGES[config.released] if config.released else counts.corrupted(config.max_images)
    cells = len(config.corruptions) * len(config.severities)
    rows = [] if config.released else [Work(f"corrupt ({processes} processes)", CORRUPTION, 1, 0, cells * per_cell, processes)]
    return [*rows, _inference(f"robustness (2 models x {cells + 1} cells)", seeds, seeds * 2 * (cells + 1) * per_cell)]

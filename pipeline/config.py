"""Typed sections of params.yaml, validated once at the boundary.

One frozen dataclass per concern; the string under each field documents it. `parse_params`
turns the parsed YAML mapping into `Params` or raises `ConfigError` naming the key, the value
and what is allowed. The library never reads params.yaml itself: stages pass the mapping in.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.config_schema import build_section, require

# The 15 "common" corruptions of Hendrycks & Dietterich (2019), as named by imagecorruptions;
# listed here so validating params does not import that (slow) package. A test keeps them equal.
COMMON_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
# The released corrupted test set of each dataset that has one (robustness.released): a release
# corrupts that dataset's test split, so its labels are that dataset's classes.
RELEASED_CORRUPTED = {"cifar10": "cifar10-c", "cifar100": "cifar100-c", "imagenet": "imagenet-c"}


def _registered(kind: str) -> list[str]:
    # Imported lazily: the registries live beside the code they construct.
    if kind == "dataset":
        from pipeline.data import DATASETS as registry
    elif kind == "encoder":
        from pipeline.models import ENCODERS as registry
    elif kind == "augmentation":
        from pipeline.augment import AUGMENTATIONS as registry
    else:
        from pipeline.optim import OPTIMIZERS as registry
    return registry.names()


def _require_registered(kind: str, key: str, name: str) -> None:
    names = _registered(kind)
    require(name in names, key, name, f"a registered {kind}: {', '.join(names)}")


# Keys that cannot change a trained model: where the same data is read from, and how often the
# kNN monitor runs. They are left out of a run's key (a change neither retrains nor invalidates a
# checkpoint) and out of the training stages' params in dvc.yaml; run.threads and tracking.* are
# never part of a key either. knn_k stays in: it changes the reported val/knn_top1. How often a
# checkpoint is written is neutral too: a resume from any checkpoint is bit-exact.
RESULT_NEUTRAL_KEYS = frozenset(
    {"data.root", "data.download", "data.loader_workers", "supcon.knn_every", "run.checkpoint_every_steps", "run.checkpoint_every_minutes"}
)


def _require_fraction(key: str, value: float) -> None:
    require(0.0 < value <= 1.0, key, value, "a fraction in (0, 1]")


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    """The data seed: the val split, the labelled subsets and the corrupted test images. It stays
    fixed across `seeds`, so the spread over training seeds is training variance only."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto = CUDA when present, else CPU."""
    compile: bool = False
    """torch.compile the model (CUDA only; ignored on CPU)."""
    threads: int = 0
    """CPU threads for torch; 0 keeps torch's default (all cores)."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds (initialisation, augmentation, batch order): the main comparison
    (pretrain_supcon, linear_eval, train_ce, robustness) and every reduced-data cell run once per
    seed, as DVC foreach/matrix stages; the report gives mean, std and n over them."""
    checkpoint_every_steps: int = 1000
    """Training writes its checkpoint (last.pt, and best.pt) after the first epoch that ends at
    least this many optimizer steps, or `checkpoint_every_minutes`, after the previous checkpoint
    (or the start), and after the last epoch. MLflow gets the epochs' metrics at the same points,
    and the log an epoch line (and one after the first epoch). A run resumes from any checkpoint
    bit-for-bit, so neither setting changes a model. In the default run SupCon and CE (6 epochs
    of about 100 steps and 30 s) checkpoint after their last epoch only; a reduced-data cell of
    one-step epochs writes every 1000 steps rather than every step."""
    checkpoint_every_minutes: float = 15.0
    """The time rule of `checkpoint_every_steps`: a checkpoint also ends the first epoch that
    finishes this many minutes after the previous one (slow steps, e.g. ImageNet)."""

    def validate(self, at: str) -> None:
        require(self.threads >= 0, f"{at}.threads", self.threads, "an integer >= 0")
        require(len(self.seeds) >= 1, f"{at}.seeds", list(self.seeds), "a non-empty list of integers")
        require(len(set(self.seeds)) == len(self.seeds), f"{at}.seeds", list(self.seeds), "a list without repeats")
        require(self.checkpoint_every_steps >= 1, f"{at}.checkpoint_every_steps", self.checkpoint_every_steps, "an integer >= 1")
        require(self.checkpoint_every_minutes > 0, f"{at}.checkpoint_every_minutes", self.checkpoint_every_minutes, "a number > 0")


@dataclass(frozen=True)
class ImbalanceConfig:
    """A long-tailed labelled train split (issue 21; pipeline/imbalance.py). Val and test stay balanced."""

    factor: float | None = None
    """n_max / n_min of the train split's classes; null = the split as it is (balanced). The class
    at rank r of C keeps floor(n_max * factor^(-r / (C - 1))) images (exponential, as CIFAR-10-LT)."""
    profile: Literal["exponential", "step"] = "exponential"
    """exponential (Cui et al. 2019) or step (the first half of the classes keep n_max, the rest
    n_max / factor; Cao et al. 2019)."""
    class_order: Literal["index", "seeded"] = "index"
    """Which classes form the head: class index order (0 is the head, as CIFAR-LT's lists are
    made) or a permutation seeded by run.seed."""

    def validate(self, at: str) -> None:
        if self.factor is not None:
            require(1.0 <= self.factor < float("inf"), f"{at}.factor", self.factor, "a number >= 1 (n_max / n_min; 1 = balanced) or null")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "fashion_mnist"
    """A registered dataset: fashion_mnist, cifar10, cifar100, imagenet, imagefolder."""
    root: str | None = None
    """Where the raw files are; null = the dataset's default (Fashion-MNIST: Debian's package)."""
    download: bool = False
    """Let torchvision download a missing dataset (needs internet; never in tests)."""
    image_size: int | None = None
    """Stored (and input) image size; null = native size. Required for imagefolder/imagenet."""
    val_fraction: float = 0.1
    """Share of the train split held out, stratified, for model selection. 0 trains on the whole
    train split as the paper does: nothing is selected, the last epoch is the model, and the kNN
    monitor reports leave-one-out kNN on a fixed train sample (train/knn_top1_loo) instead of val."""
    train_fraction: float = 1.0
    """Share of the (post-val) train split the main training stages use (a nested subset)."""
    storage: Literal["auto", "pixels", "files"] = "auto"
    """How image folders (imagefolder, imagenet) are prepared: `pixels` decodes every image once
    into a uint8 array of image_size (small trees); `files` keeps only the file index and reads
    the JPEGs while training (random resized crop on the full image; eval resizes to
    image_size * 256/224 and centre-crops). auto = files above `files_above` train images.
    Array datasets (fashion_mnist, cifar10, cifar100) are always pixels."""
    files_above: int = 200_000
    """storage auto: image trees with more train images than this are read from their files."""
    loader_workers: int = 0
    """storage files: decoding worker processes per training process; 0 = one per core (at most 8)."""
    imbalance: ImbalanceConfig = field(default_factory=ImbalanceConfig)
    """Subsample the labelled train split to a long tail (default: off)."""

    def validate(self, at: str) -> None:
        _require_registered("dataset", f"{at}.dataset", self.dataset)
        # data.root is not checked here: only `prepare` reads it (and says what is missing and
        # how to get it), so a preset can be previewed and applied before its data exists, and a
        # machine that pulled data/prepared/ from a DVC remote trains without the raw files.
        if self.image_size is not None:
            require(self.image_size >= 8, f"{at}.image_size", self.image_size, "an integer >= 8 or null")
        require(0.0 <= self.val_fraction < 1.0, f"{at}.val_fraction", self.val_fraction, "a fraction in [0, 1)")
        require(self.files_above >= 0, f"{at}.files_above", self.files_above, "an integer >= 0")
        require(self.loader_workers >= 0, f"{at}.loader_workers", self.loader_workers, "an integer >= 0")
        _require_fraction(f"{at}.train_fraction", self.train_fraction)


@dataclass(frozen=True)
class ModelConfig:
    encoder: str = "small_resnet"
    """A registered encoder: small_resnet (CPU default), resnet18 ... resnet152, resnet200."""
    width: int = 32
    """small_resnet only: channels of the first stage (doubles per stage)."""
    depth: int = 3
    """small_resnet only: number of stages."""
    blocks: int = 1
    """small_resnet only: residual blocks per stage."""
    head: Literal["mlp", "linear"] = "mlp"
    """Projection head: MLP (hidden = encoder width, the CIFAR runs) or linear (ImageNet runs)."""
    feat_dim: int = 128
    """Projection output size (the paper uses 128)."""
    sync_batchnorm: bool = False
    """Under torchrun, BatchNorm statistics over the global batch (SyncBatchNorm) rather than each
    process's share; no effect in one process. On in the ImageNet presets."""

    def validate(self, at: str) -> None:
        _require_registered("encoder", f"{at}.encoder", self.encoder)
        for name in ("width", "depth", "blocks", "feat_dim"):
            value = getattr(self, name)
            require(value >= 1, f"{at}.{name}", value, "an integer >= 1")


@dataclass(frozen=True)
class AugmentConfig:
    policy: str = "simaugment"
    """simaugment, autoaugment, randaugment, stacked_randaugment, basic or none."""
    strength: float = 0.5
    """Colour-jitter strength s of SimAugment (brightness/contrast/saturation 0.8s, hue 0.2s)."""
    crop_scale: tuple[float, ...] = (0.2, 1.0)
    """Random-resized-crop area range (min, max), fractions of the image."""
    blur: bool = False
    """Gaussian blur in SimAugment (the paper uses it for large images only)."""
    randaugment_n: int = 2
    """RandAugment: operations per image."""
    randaugment_m: int = 9
    """RandAugment: magnitude (0-30 scale)."""

    def validate(self, at: str) -> None:
        _require_registered("augmentation", f"{at}.policy", self.policy)
        require(0.0 <= self.strength <= 2.0, f"{at}.strength", self.strength, "a number in [0, 2]")
        low_high = self.crop_scale
        ok = len(low_high) == 2 and 0.0 < low_high[0] <= low_high[1] <= 1.0
        require(ok, f"{at}.crop_scale", list(low_high), "[min, max] with 0 < min <= max <= 1")
        require(self.randaugment_n >= 1, f"{at}.randaugment_n", self.randaugment_n, "an integer >= 1")
        require(0 <= self.randaugment_m <= 30, f"{at}.randaugment_m", self.randaugment_m, "an integer in [0, 30]")


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"
    """A registered optimizer: sgd, lars, rmsprop, adamw."""
    lr: float = 0.1
    """Base learning rate (per 256 images when scale_lr is true)."""
    scale_lr: bool = False
    """Use lr * batch_size / 256 (the paper's linear scaling rule)."""
    momentum: float = 0.9
    """Momentum for sgd, lars and rmsprop."""
    nesterov: bool = False
    """Nesterov momentum (sgd only)."""
    weight_decay: float = 1e-4
    """Applied to weights only, never to biases or norm parameters."""
    warmup_epochs: float = 0.0
    """Linear warm-up length before the schedule."""
    schedule: Literal["cosine", "constant", "exponential"] = "cosine"
    """Decay after warm-up."""

    def validate(self, at: str) -> None:
        _require_registered("optimizer", f"{at}.name", self.name)
        require(self.lr > 0, f"{at}.lr", self.lr, "a number > 0")
        require(0.0 <= self.momentum < 1.0, f"{at}.momentum", self.momentum, "a number in [0, 1)")
        require(self.weight_decay >= 0, f"{at}.weight_decay", self.weight_decay, "a number >= 0")
        require(self.warmup_epochs >= 0, f"{at}.warmup_epochs", self.warmup_epochs, "a number >= 0")


@dataclass(frozen=True)
class TrainingConfig:
    """What every training stage shares: budget, batch, augmentation and optimizer."""

    epochs: int = 10
    """Passes over the training split."""
    batch_size: int = 256
    """Images per step (before views); per process under torchrun."""
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    """Train-time augmentation policy."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    """Optimizer and learning-rate schedule."""

    def validate(self, at: str) -> None:
        require(self.epochs >= 1, f"{at}.epochs", self.epochs, "an integer >= 1")
        require(self.batch_size >= 2, f"{at}.batch_size", self.batch_size, "an integer >= 2")


@dataclass(frozen=True)
class MemoryConfig:
    """A queue of earlier batches' keys for the SupCon loss (issue 21; pipeline/memory_queue.py)."""

    size: int = 0
    """Keys held (one per view of each image; FIFO); 0 = off: the plain SupCon loss and gradients,
    exactly. Capped at the number of training images (a 1% cell holds fewer than the queue)."""
    momentum: float = 0.99
    """EMA momentum of the key encoder (a copy of encoder + head): 0 = the online model's own
    embeddings, detached (pytorch-metric-learning's CrossBatchMemory)."""

    def validate(self, at: str) -> None:
        require(self.size >= 0, f"{at}.size", self.size, "an integer >= 0 (0 = no queue)")
        require(0.0 <= self.momentum < 1.0, f"{at}.momentum", self.momentum, "a number in [0, 1)")


@dataclass(frozen=True)
class SupConConfig(TrainingConfig):
    method: Literal["supcon", "simclr"] = "supcon"
    """supcon uses labels (many positives); simclr ignores them (only the other views)."""
    variant: Literal["out", "in"] = "out"
    """L_out (Eq. 2, the paper's choice) or L_in (Eq. 3)."""
    temperature: float = 0.1
    """Softmax temperature; 0.1 was best in the paper."""
    base_temperature: float | None = None
    """The loss is scaled by temperature / base_temperature; null = temperature (factor 1)."""
    views: int = 2
    """Augmented views per image."""
    knn_every: int = 1
    """Run the kNN monitor on the val split every this many epochs (0 = never)."""
    knn_k: int = 20
    """Neighbours for the kNN monitor."""
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    """Momentum-key queue: earlier batches' keys join the contrast set (for small batches)."""

    def validate(self, at: str) -> None:
        super().validate(at)
        require(self.temperature > 0, f"{at}.temperature", self.temperature, "a number > 0")
        if self.base_temperature is not None:
            require(self.base_temperature > 0, f"{at}.base_temperature", self.base_temperature, "a number > 0 or null")
        require(self.views >= 1, f"{at}.views", self.views, "an integer >= 1")
        require(self.knn_every >= 0, f"{at}.knn_every", self.knn_every, "an integer >= 0")
        require(self.knn_k >= 1, f"{at}.knn_k", self.knn_k, "an integer >= 1")


@dataclass(frozen=True)
class CrossEntropyConfig(TrainingConfig):
    """The baseline: same encoder, augmentation and epoch budget, trained end to end with CE."""

    label_smoothing: float = 0.0
    """Label smoothing of the CE loss (0 = plain CE, as in the paper)."""

    def validate(self, at: str) -> None:
        super().validate(at)
        require(0.0 <= self.label_smoothing < 1.0, f"{at}.label_smoothing", self.label_smoothing, "a number in [0, 1)")


@dataclass(frozen=True)
class LinearConfig(TrainingConfig):
    """Linear classifier on the frozen SupCon encoder; policy none computes features once."""


@dataclass(frozen=True)
class RobustnessConfig:
    corruptions: tuple[str, ...] = COMMON_CORRUPTIONS
    """Corruptions to score (imagecorruptions names); the mCE averages over these."""
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    """Severity levels, 1 (mild) to 5."""
    max_images: int | None = None
    """Corrupt at most this many test images (stratified); null = the whole test split."""
    released: Literal["cifar10-c", "cifar100-c", "imagenet-c"] | None = None
    """Score a released corrupted set instead of generating one (Hendrycks & Dietterich's files)."""
    released_root: str | None = None
    """The released set's folder (cifar10-c: <corruption>.npy + labels.npy; imagenet-c:
    <corruption>/<severity>/<wnid>/<image>); the corrupt stage needs it with `released`."""
    batch_size: int = 500
    """Images per forward pass when scoring (and per read of a released set)."""

    def validate(self, at: str) -> None:
        require(self.batch_size >= 1, f"{at}.batch_size", self.batch_size, "an integer >= 1")
        known = COMMON_CORRUPTIONS + EXTRA_CORRUPTIONS
        require(len(self.corruptions) >= 1, f"{at}.corruptions", list(self.corruptions), "a non-empty list")
        for i, name in enumerate(self.corruptions):
            require(name in known, f"{at}.corruptions[{i}]", name, "one of " + ", ".join(known))
        require(len(set(self.corruptions)) == len(self.corruptions), f"{at}.corruptions", list(self.corruptions), "a list without repeats")
        require(len(self.severities) >= 1, f"{at}.severities", list(self.severities), "a non-empty list of integers in 1..5")
        for i, level in enumerate(self.severities):
            require(1 <= level <= 5, f"{at}.severities[{i}]", level, "an integer in 1..5")
        require(list(self.severities) == sorted(set(self.severities)), f"{at}.severities", list(self.severities), "increasing, without repeats")
        if self.max_images is not None:
            require(self.max_images >= 1, f"{at}.max_images", self.max_images, "an integer >= 1 or null")


@dataclass(frozen=True)
class ReducedConfig:
    fractions: tuple[int | float, ...] = (0.01, 0.05, 0.1)
    """Shares of the labelled train split for the reduced-data sweep (nested subsets). A whole
    number stays an int (1, not 1.0): dvc.yaml names a cell by the value as YAML typed it."""
    methods: tuple[Literal["supcon", "ce"], ...] = ("supcon", "ce")
    """Methods trained at each fraction (supcon: pretraining and its linear probe on the subset)."""
    steps: int = 300
    """Budget rule, the same for every method: each training run of a cell takes at least this
    many optimizer steps (and min_epochs epochs), however few images its fraction holds."""
    min_epochs: int = 2

    def validate(self, at: str) -> None:
        require(len(self.fractions) >= 1, f"{at}.fractions", list(self.fractions), "a non-empty list of fractions in (0, 1]")
        for i, fraction in enumerate(self.fractions):
            _require_fraction(f"{at}.fractions[{i}]", fraction)
        require(len(set(self.fractions)) == len(self.fractions), f"{at}.fractions", list(self.fractions), "a list without repeats")
        require(len(self.methods) >= 1, f"{at}.methods", list(self.methods), "a non-empty list of supcon, ce")
        require(self.steps >= 1, f"{at}.steps", self.steps, "an integer >= 1")
        require(self.min_epochs >= 1, f"{at}.min_epochs", self.min_epochs, "an integer >= 1")


@dataclass(frozen=True)
class LongTailConfig:
    factors: tuple[int | float, ...] = (10, 100)
    """Imbalance factors (n_max / n_min) of the long_tail matrix: each cell trains on the split the
    main stages would with data.imbalance.factor = that factor (profile and class order from
    data.imbalance). A whole number stays an int: dvc.yaml names a cell by the value as YAML typed it."""
    methods: tuple[Literal["supcon", "ce"], ...] = ("supcon", "ce")
    """Methods trained at each factor (supcon: pretraining and its linear probe on the long tail)."""
    # No budget keys of its own: a cell trains under reduced.steps / reduced.min_epochs, so one
    # rule sizes every matrix cell (a long_tail cell costs what a reduced one does, and a preset's
    # budget, or the miniature one in tests, applies to both sweeps at once).

    def validate(self, at: str) -> None:
        require(len(self.factors) >= 1, f"{at}.factors", list(self.factors), "a non-empty list of numbers >= 1")
        for i, factor in enumerate(self.factors):
            require(1 <= factor < float("inf"), f"{at}.factors[{i}]", factor, "a number >= 1 (n_max / n_min; 1 = balanced)")
        require(len(set(self.factors)) == len(self.factors), f"{at}.factors", list(self.factors), "a list without repeats")
        require(len(self.methods) >= 1, f"{at}.methods", list(self.methods), "a non-empty list of supcon, ce")


@dataclass(frozen=True)
class SmallBatchConfig:
    """Cells of the small_batch matrix (queue x equal x run.seeds): SupCon at a small batch, with
    and without the momentum-key queue, beside the main stages' batch (supcon.batch_size)."""

    batch_size: int = 32
    """The small batch every cell trains at (per process, as supcon.batch_size)."""
    queues: tuple[int, ...] = ()
    """Queue sizes of the cells (supcon.memory.size; 0 = no queue; momentum from supcon.memory);
    empty = no small-batch cell (the default run's budget has no room for them)."""
    equal: tuple[Literal["steps", "epochs"], ...] = ("steps", "epochs")
    """What a cell keeps equal to the main SupCon run: `steps`, the same optimizer steps and warm-up
    steps (epochs scaled by batch_size / supcon.batch_size, rounded to whole epochs), or `epochs`,
    the same epochs and warm-up epochs (as many images seen, more steps)."""

    def validate(self, at: str) -> None:
        require(self.batch_size >= 1, f"{at}.batch_size", self.batch_size, "an integer >= 1")
        for i, size in enumerate(self.queues):
            require(size >= 0, f"{at}.queues[{i}]", size, "an integer >= 0 (0 = no queue)")
        require(len(set(self.queues)) == len(self.queues), f"{at}.queues", list(self.queues), "a list without repeats")
        require(len(self.equal) >= 1, f"{at}.equal", list(self.equal), "a non-empty list of steps, epochs")
        require(len(set(self.equal)) == len(self.equal), f"{at}.equal", list(self.equal), "a list without repeats")


@dataclass(frozen=True)
class SweepConfig:
    num_samples: int = 8
    """Trials per sweep."""
    max_concurrent: int = 1
    """Trials running at once on this machine or cluster."""
    epochs: int = 2
    """Pretraining epochs per trial (sweeps are screens, not full runs)."""
    address: str | None = None
    """Ray cluster address (e.g. ray://head:10001); null = a local Ray."""
    storage_path: str | None = None
    """Ray Tune's storage for a cluster (a folder every node mounts, or s3://...); null = sweeps/<name>/ray."""
    train_fraction: float | None = None
    """Share of the labelled train split each trial trains on (a nested stratified subset, as in
    reduced_data); null = data.train_fraction, what the stages train on."""

    def validate(self, at: str) -> None:
        for name in ("num_samples", "max_concurrent", "epochs"):
            value = getattr(self, name)
            require(value >= 1, f"{at}.{name}", value, "an integer >= 1")
        if self.train_fraction is not None:
            _require_fraction(f"{at}.train_fraction", self.train_fraction)


@dataclass(frozen=True)
class TrackingConfig:
    experiment: str = "supcon-pipeline"
    """MLflow experiment name."""
    uri: str | None = None
    """Tracking URI; null = sqlite:///<repo>/mlflow.db (MLFLOW_TRACKING_URI overrides both)."""


@dataclass(frozen=True)
class Params:
    """The whole of params.yaml."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    supcon: SupConConfig = field(default_factory=SupConConfig)
    ce: CrossEntropyConfig = field(default_factory=CrossEntropyConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    reduced: ReducedConfig = field(default_factory=ReducedConfig)
    long_tail: LongTailConfig = field(default_factory=LongTailConfig)
    small_batch: SmallBatchConfig = field(default_factory=SmallBatchConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def validate(self, at: str) -> None:
        # Checked here, before any stage runs: another dataset's release would be scored against
        # these models' classes (100-class labels on a 10-class model) and still give numbers.
        released, dataset = self.robustness.released, self.data.dataset
        if released is not None:
            own = RELEASED_CORRUPTED.get(dataset)
            allowed = f"{own!r} (the release of data.dataset {dataset}) or null" if own else f"null (data.dataset {dataset} has no released corrupted set)"
            require(released == own, "robustness.released", released, allowed)


def parse_params(raw: Any) -> Params:
    """Validate a parsed params mapping; raises ConfigError naming the first bad key."""
    return build_section(Params, raw, "")

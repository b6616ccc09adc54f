"""Stage `prepare`: materialise the dataset under data/prepared/<dataset>/ (splits, subsets, manifest)."""

from pipeline.config import Params
from pipeline.data import prepare_dataset
from stages import paths
from stages.cli import run_stage


def prepare(params: Params) -> None:
    data = params.data
    # The main stages train on `train_fraction`; the reduced-data sweep on its own fractions.
    fractions = sorted({data.train_fraction, *params.reduced.fractions})
    out_dir = paths.prepared(data.dataset)
    manifest = prepare_dataset(
        data.dataset,
        root=data.root,
        download=data.download,
        image_size=data.image_size,
        val_fraction=data.val_fraction,
        fractions=fractions,
        seed=params.run.seed,
        out_dir=out_dir,
    )
    counts = {split: sum(per_class.values()) for split, per_class in manifest["counts"].items()}
    print(f"prepare: {data.dataset} -> {out_dir}: " + ", ".join(f"{split} {n}" for split, n in counts.items()))


def main() -> None:
    run_stage(prepare)


if __name__ == "__main__":
    main()

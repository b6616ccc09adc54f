"""Stage `prepare`: materialise the dataset under data/prepared/<dataset>/ (splits, subsets, manifest)."""

from pipeline.config import Params
from pipeline.data import prepare_dataset
from stages import paths
from stages.cli import run_stage


def prepare(params: Params) -> None:
    data = params.data
    # The main stages train on `train_fraction`. The reduced-data cells draw their own fractions
    # (pipeline/reduced.py, the same nested draw): listing them here would make every stage that
    # reads the prepared data rerun when a fraction is added.
    fractions = [data.train_fraction]
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
        storage=data.storage,
        files_above=data.files_above,
    )
    counts = {split: sum(per_class.values()) for split, per_class in manifest["counts"].items()}
    stored = "file index (images read while training)" if manifest.get("storage") == "files" else "images"
    print(f"prepare: {data.dataset} -> {out_dir} ({stored}): " + ", ".join(f"{split} {n}" for split, n in counts.items()))


def main() -> None:
    run_stage(prepare)


if __name__ == "__main__":
    main()

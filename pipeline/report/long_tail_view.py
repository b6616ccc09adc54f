"""Head, middle and tail of a long-tailed cell: its classes grouped into thirds by train-class size.

Thirds by rank, not the usual >100 / 20-100 / <20 image thresholds (Liu et al. 2019): with 10
classes those leave groups empty, and on a small split every class is "few-shot". Classes are
ranked by their train images in the cell, largest first (ties by class index); the class at rank
i of C is in third floor(3i / C): with 10 classes 4 head, 3 middle, 3 tail; with 100, 34, 33, 33.
A third's top-1 is the mean of its classes' test top-1: the test split is balanced, so this is
also the top-1 over the third's test images.
"""

from statistics import fmean

THIRDS = ("head", "middle", "tail")
RULE = (
    "classes ranked by their train images in the cell, largest first (ties by class index); the class at rank i of C is in "
    "third ⌊3i / C⌋ (head, middle, tail; with 10 classes 4, 3 and 3); a third's top-1 is the mean of its classes' test top-1"
)
"""The grouping rule, as the report states it."""


def size_thirds(train_per_class: list[int]) -> dict[str, list[int]]:
    """third -> the class indices in it, from the train images per class (by class index)."""
    ranked = sorted(range(len(train_per_class)), key=lambda c: (-train_per_class[c], c))
    groups: dict[str, list[int]] = {name: [] for name in THIRDS}
    for rank, cls in enumerate(ranked):
        groups[THIRDS[3 * rank // len(ranked)]].append(cls)
    return groups


def thirds_top1(cell: dict) -> dict[str, float]:
    """third -> mean test top-1 of its classes, for one long-tailed cell's metrics; a third with
    no class (fewer than 3 classes) is left out."""
    per_class = cell["test/top1_per_class"]
    return {name: fmean(per_class[c] for c in classes) for name, classes in size_thirds(cell["train_per_class"]).items() if classes}

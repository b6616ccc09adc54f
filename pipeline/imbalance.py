"""Long-tailed training data (issue 21): which train images each class keeps under an imbalance
profile, as CIFAR-10-LT / CIFAR-100-LT are made (Cui et al. 2019; Cao et al. 2019).

- exponential: the class at rank r (0 = head) of C keeps floor(n_max * factor^(-r / (C - 1)))
  images, n_max the largest class's size; factor = n_max / n_min, 1 = balanced.
- step: the first half of the ranks keeps n_max, the second floor(n_max / factor) (Cao et al.'s
  step imbalance; with an odd C the middle class is in the head).

Ranks follow the class order: class index order (0 is the head), as Cui et al.'s lists are made,
or a seeded permutation (`class_order(C, seed)`), so that which classes form the tail is a choice
the user can vary. Within a class, the images kept are the first of a seeded shuffle of its
indices; the shuffle does not depend on the factor, so under one seed a larger factor keeps a
subset of a smaller one's images (factor 100's tail is part of factor 10's), and the factors
differ only in how many. Val and test are never subsampled (callers pass the train split only).
"""

import math

import torch

PROFILES = ("exponential", "step")


def class_order(num_classes: int, seed: int | None) -> list[int]:
    """Classes from head to tail: index order (seed None), else a permutation seeded by `seed`."""
    if seed is None:
        return list(range(num_classes))
    return torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed)).tolist()


def kept_per_rank(n_max: int, num_classes: int, factor: float, profile: str) -> list[int]:
    """Images kept by the class at each rank, head first."""
    if profile not in PROFILES:
        raise ValueError(f"data.imbalance.profile = {profile!r} is not allowed: expected one of {', '.join(PROFILES)}")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 1 <= factor < math.inf:
        raise ValueError(f"data.imbalance.factor = {factor!r} is not allowed: expected a number >= 1 (n_max / n_min; 1 = balanced)")
    if factor > n_max:
        raise ValueError(f"data.imbalance.factor = {factor} would leave the tail class empty: the largest class has {n_max} images, so at most {n_max}")
    if num_classes == 1:
        return [n_max]
    if profile == "exponential":
        # The relative 1e-9 keeps n_max / factor whole when it is (49 * 49^-1 is 0.999... in floats);
        # it is far below any size's distance from the next integer, so published sizes stand.
        return [math.floor(n_max * factor ** (-rank / (num_classes - 1)) * (1 + 1e-9)) for rank in range(num_classes)]
    head = (num_classes + 1) // 2
    return [n_max if rank < head else math.floor(n_max / factor) for rank in range(num_classes)]


def long_tailed_indices(labels: torch.Tensor, factor: float, profile: str = "exponential", order_seed: int | None = None, seed: int = 0) -> torch.Tensor:
    """Sorted indices into `labels` (the train split's, [N]) of the images the long tail keeps.

    A class smaller than its rank's count keeps all it has (never so when the split is balanced).
    """
    labels = labels.to(torch.long)
    num_classes = int(labels.max()) + 1
    sizes = torch.bincount(labels, minlength=num_classes)
    counts = kept_per_rank(int(sizes.max()), num_classes, factor, profile)
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for rank, cls in enumerate(class_order(num_classes, order_seed)):
        members = torch.nonzero(labels == cls).flatten()
        shuffled = members[torch.randperm(len(members), generator=generator)]
        kept.append(shuffled[: counts[rank]])
    return torch.sort(torch.cat(kept)).values

"""Deterministic, stratified index selection: the val split and the nested label-fraction subsets.

Every class gets its own random stream, seeded by (seed, purpose, class), so the choice for one
class does not depend on how many other classes or examples there are.
"""

from collections.abc import Sequence

import numpy as np

_VAL, _SUBSET = 0, 1  # purposes: keeps the val draw and the subset draw independent


def round_half_up(x: float) -> int:
    """round() without banker's rounding, so 2.5 examples -> 3 like a reader expects."""
    return int(np.floor(x + 0.5))


def _class_permutation(labels: np.ndarray, cls: int, seed: int, purpose: int) -> np.ndarray:
    """Indices of class `cls` in labels [N], in an order fixed by (seed, purpose, cls)."""
    members = np.flatnonzero(labels == cls)
    return np.random.default_rng([seed, purpose, cls]).permutation(members)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """labels [N] -> (kept, held_out) sorted int64 indices; each class holds out round(fraction * n).

    Every class keeps at least one example, so a class of one is never moved out entirely.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    kept, held = [], []
    for cls in np.unique(labels):
        order = _class_permutation(labels, int(cls), seed, _VAL)
        n_held = min(round_half_up(fraction * len(order)), len(order) - 1)
        held.append(order[:n_held])
        kept.append(order[n_held:])
    return _sorted_concat(kept), _sorted_concat(held)


def nested_subsets(labels: np.ndarray, fractions: Sequence[float], seed: int) -> dict[float, np.ndarray]:
    """labels [N] -> {fraction: sorted int64 indices}, each class keeping max(1, round(f * n)).

    All fractions take prefixes of the same per-class permutation, so a smaller subset is
    always contained in a larger one; fraction 1.0 is the whole split.
    """
    bad = [f for f in fractions if not 0.0 < f <= 1.0]
    if bad:
        raise ValueError(f"fractions must be in (0, 1], got {bad}")
    orders = [_class_permutation(labels, int(cls), seed, _SUBSET) for cls in np.unique(labels)]
    return {
        float(f): _sorted_concat([order[: max(1, round_half_up(f * len(order)))] for order in orders])
        for f in fractions
    }


def _sorted_concat(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(parts)).astype(np.int64)

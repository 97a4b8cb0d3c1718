"""Cross-validation folds over a labeled folder's pictures: the same folds for every trainer that
is compared (the head on cached features, the whole network on a GPU), so their errors line up."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from crowdwatch.evaluation.labeled import LabeledItem


def folds(
    items: Sequence[LabeledItem], spec: str, margin: int, seed: int
) -> list[tuple[list[int], list[int]]]:
    """(train indices, test indices) per fold. `blocks:K` cuts the (ordered) items into K
    contiguous runs and drops `margin` frame numbers on both sides of each test run from its
    training set (video: neighbouring frames are near-duplicates); `kfold:K` deals a seeded
    shuffle into K folds. Raises ValueError for a spec it cannot use."""
    kind, _, k_text = spec.partition(":")
    if kind not in ("blocks", "kfold") or not k_text.isdigit():
        raise ValueError(f"cross-validation {spec!r}: use blocks:K or kfold:K")
    k = int(k_text)
    n = len(items)
    if k < 2 or k > n:
        raise ValueError(f"cross-validation {spec!r}: need 2 <= K <= {n} (the pictures)")
    out = []
    if kind == "blocks":
        frames = [it.frame_number for it in items]
        if any(f is None for f in frames):
            raise ValueError(f"cross-validation {spec!r} needs numbered frames")
        bounds = np.linspace(0, n, k + 1).round().astype(int)
        for lo, hi in itertools.pairwise(bounds.tolist()):
            test = list(range(lo, hi))
            first, last = int(frames[lo] or 0), int(frames[hi - 1] or 0)
            train = [
                i
                for i, f in enumerate(frames)
                if not (lo <= i < hi) and f is not None and not (first - margin <= f <= last + margin)
            ]
            out.append((train, test))
    else:
        order = np.random.default_rng(seed).permutation(n)
        for j in range(k):
            test = sorted(int(i) for i in order[j::k])
            held = set(test)
            out.append(([i for i in range(n) if i not in held], test))
    return out

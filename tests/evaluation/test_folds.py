"""Cross-validation folds: every picture is tested exactly once, never trained on in its own fold,
and video neighbours of a test block are kept out of its training set."""

from __future__ import annotations

from pathlib import Path

import pytest

from crowdwatch.evaluation.folds import folds
from crowdwatch.evaluation.labeled import LabeledItem


def items(names: list[str]) -> list[LabeledItem]:
    return [LabeledItem(n, Path(f"{n}.jpg"), Path(f"{n}.json"), 1) for n in names]


def test_kfold_tests_each_picture_once_and_is_fixed_by_the_seed() -> None:
    pics = items([f"IMG_{i}" for i in range(1, 24)])
    split = folds(pics, "kfold:5", 0, seed=0)
    assert len(split) == 5
    tested = sorted(i for _, test in split for i in test)
    assert tested == list(range(23))
    for train, test in split:
        assert not set(train) & set(test)
        assert len(train) + len(test) == 23
    assert folds(pics, "kfold:5", 0, seed=0) == split
    assert folds(pics, "kfold:5", 0, seed=1) != split


def test_blocks_are_contiguous_and_leave_a_margin_of_frames_out_of_training() -> None:
    pics = items([f"seq_{f:06d}" for f in range(1, 101, 2)])  # every 2nd frame, 1..99
    split = folds(pics, "blocks:5", margin=4, seed=0)
    train, test = split[1]
    assert test == list(range(10, 20))  # frames 21..39
    frames = [pics[i].frame_number for i in train]
    assert all(f is not None and not 17 <= f <= 43 for f in frames)
    assert 15 in frames
    assert 45 in frames


@pytest.mark.parametrize(
    ("spec", "names", "message"),
    [
        ("kfold", ["a1", "a2"], "use blocks:K or kfold:K"),
        ("shuffle:3", ["a1", "a2", "a3"], "use blocks:K or kfold:K"),
        ("kfold:1", ["a1", "a2"], r"need 2 <= K <= 2"),
        ("kfold:3", ["a1", "a2"], r"need 2 <= K <= 2"),
        ("blocks:2", ["left", "right"], "needs numbered frames"),
    ],
)
def test_a_spec_it_cannot_use_is_refused(spec: str, names: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        folds(items(names), spec, 0, seed=0)

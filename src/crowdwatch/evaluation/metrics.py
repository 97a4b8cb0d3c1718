"""Count error summaries, as crowd-counting papers report them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class CountErrors:
    n: int
    mae: float
    rmse: float
    """Papers call this "MSE" (they take the square root); `mse` is the plain mean square."""
    mse: float
    mean_signed_error: float
    """Mean of predicted - true: positive = overcounting."""

    @classmethod
    def of(cls, predicted: npt.ArrayLike, true: npt.ArrayLike) -> CountErrors:
        p = np.asarray(predicted, dtype=np.float64).reshape(-1)
        t = np.asarray(true, dtype=np.float64).reshape(-1)
        if len(p) != len(t):
            raise ValueError(f"{len(p)} predictions but {len(t)} true counts")
        if len(p) == 0:
            raise ValueError("no images to score")
        err = p - t
        mse = float(np.mean(err**2))
        return cls(
            n=len(p),
            mae=float(np.mean(np.abs(err))),
            rmse=float(np.sqrt(mse)),
            mse=mse,
            mean_signed_error=float(np.mean(err)),
        )

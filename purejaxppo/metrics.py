"""Reductions of training metrics on the host (numpy): what summaries, progress bars,
evaluations and benchmarks report. Metrics arrays are `[R, U]` (runs x updates) or `[U]`.
`mean_over_finished` also takes jax arrays, so the trainer's per-update means use it too."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def final_returns(metrics: Any, fraction: float = 0.1) -> np.ndarray:
    """Per run `[R]`: mean return of the episodes completed in the last `fraction` of updates
    (weighted by episode count; NaN for a run with no completed episode there)."""
    returns = np.asarray(metrics.episode_return, dtype=np.float64)
    counts = np.asarray(metrics.episodes, dtype=np.float64)
    tail = max(1, int(np.ceil(returns.shape[-1] * fraction)))
    returns, counts = returns[..., -tail:], counts[..., -tail:]
    total = np.nansum(np.where(counts > 0, returns * counts, 0.0), axis=-1)
    n = counts.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def first_nonfinite_update(metrics: Any) -> tuple[int, int] | None:
    """`(run, update)` where the loss first became NaN/inf (earliest update), or None."""
    loss = np.asarray(metrics.total_loss)
    if loss.size == 0:
        return None  # no update yet (a run stopped before its first chunk ended)
    bad = ~np.isfinite(loss.reshape(-1, loss.shape[-1]))
    if not bad.any():
        return None
    updates = np.where(bad.any(axis=1), bad.argmax(axis=1), np.iinfo(np.int64).max)
    run = int(updates.argmin())
    return run, int(updates[run])


def return_stats(values: np.ndarray) -> dict[str, Any]:
    """mean/std/min/max over runs (NaN-aware: a run with no finished episode is skipped)."""
    finite = values[np.isfinite(values)]
    per_run = [None if not np.isfinite(v) else round(float(v), 4) for v in values]
    if finite.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "per_run": per_run}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "per_run": per_run,
    }


def recent_mean_return(metrics: Any) -> float:
    """Mean over runs of each run's mean return over the chunk's updates that ended an
    episode (NaN if no run finished one); `metrics` numpy `[R, k]`."""
    returns = np.asarray(metrics.episode_return, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(np.nanmean(returns, axis=-1)))


def mean_over_finished(values: Any, finished: Any, axis: int | None = None) -> Any:
    """The mean of `values` where `finished` (bool, shaped like `values`) over `axis` (None:
    all), NaN where none is finished: the one mean over finished episodes. numpy arrays give
    numpy (the host's reports), jax arrays jax (the trainer's metrics, under jit)."""
    xp = _array_module(values)
    count = xp.sum(finished, axis=axis)
    total = xp.sum(xp.where(finished, values, 0), axis=axis)
    return xp.where(count > 0, total / xp.maximum(count, 1), xp.nan)


def _array_module(x: Any) -> Any:
    """jax.numpy for a jax array (traced ones too), numpy for anything else."""
    namespace = getattr(x, "__array_namespace__", None)
    return np if namespace is None else namespace()


def mean_finished_returns(returns: Any, finished: Any) -> np.ndarray:
    """Per run `[R]`: mean return of the finished episodes of `returns` `[R, E]` in float64
    (NaN for a run that finished none)."""
    returns = np.asarray(returns, dtype=np.float64)
    return mean_over_finished(returns, np.asarray(finished), axis=-1)

"""Paired significance tests on per-prompt scores: exact McNemar, sign-flip permutation, bootstrap, z;
and the unbiased pass@k estimator that per-prompt pass@k scores come from.

Pure functions over numbers; the gate uses them to tell a real drop from sampling noise. Written here
because they are short and Cascade does not depend on scipy, and because the permutation test must
enumerate every sign flip for small samples (an exact p) and be deterministic for a seed otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EXACT_PERMUTATION_MAX = 16
"""Up to this many non-zero differences the permutation test enumerates all 2**m sign flips."""


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _binom_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exact in integers for moderate n, in log space beyond."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if n <= 10_000:
        term = total = 1  # C(n, 0)
        for i in range(k):
            term = term * (n - i) // (i + 1)  # C(n, i + 1), exact
            total += term
        return total / (1 << n)
    log_terms = np.array(
        [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]
    ) - n * math.log(2.0)
    top = float(log_terms.max())
    return float(math.exp(top) * np.exp(log_terms - top).sum())


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs of a paired 0/1 comparison.

    ``b`` counts prompts correct before and wrong after, ``c`` wrong before and correct after.
    Under no change each discordant prompt is equally likely to go either way, so
    ``p = min(1, 2 * P(Binomial(b + c, 1/2) <= min(b, c)))``; with no discordant pair ``p = 1``.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * _binom_half_cdf(min(b, c), n))


def _paired_arrays(before: Sequence[float], after: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(before, dtype=float)
    y = np.asarray(after, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"paired scores need two flat sequences of equal length, got {x.shape} and {y.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired scores must be finite numbers")
    return x, y


def paired_permutation_test(
    before: Sequence[float],
    after: Sequence[float],
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    exact_max: int = EXACT_PERMUTATION_MAX,
) -> float:
    """Two-sided sign-flip permutation p-value for the mean of per-prompt differences ``after - before``.

    Under no change the sign of each prompt's difference is arbitrary, so the observed
    ``|sum(d)|`` is compared with its distribution over random sign flips. Zero differences add
    nothing to any resample and are dropped; with ``m <= exact_max`` remaining differences all
    ``2**m`` flips are enumerated (exact p), otherwise ``n_resamples`` random flips give the
    add-one Monte Carlo estimate ``(hits + 1) / (n_resamples + 1)``, deterministic for a seed.
    """
    x, y = _paired_arrays(before, after)
    d = y - x
    d = d[np.abs(d) > 1e-12]
    m = int(d.size)
    if m == 0:
        return 1.0
    observed = abs(float(d.sum()))
    slack = 1e-9 * float(np.abs(d).sum())  # sums of the same terms in another order may differ by ulps
    if m <= exact_max:
        bits = (np.arange(2**m)[:, None] >> np.arange(m)) & 1
        stats = np.abs((1 - 2 * bits) @ d)
        return float(np.count_nonzero(stats >= observed - slack) / stats.size)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    rng = np.random.default_rng(seed)
    batch = max(1, min(n_resamples, 4_000_000 // m))  # bounds memory to a few tens of MB
    hits = done = 0
    while done < n_resamples:
        size = min(batch, n_resamples - done)
        signs = rng.integers(0, 2, size=(size, m), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ d) >= observed - slack))
        done += size
    return (hits + 1) / (n_resamples + 1)


def paired_bootstrap_ci(
    before: Sequence[float],
    after: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean per-prompt difference ``after - before``.

    Prompts are resampled with replacement as pairs, which keeps the correlation between the two
    evaluations; the interval is for reporting the size of a change, the gate decides with p-values.
    """
    x, y = _paired_arrays(before, after)
    if x.size == 0:
        raise ValueError("a bootstrap interval needs at least one paired prompt")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    d = y - x
    n = int(d.size)
    rng = np.random.default_rng(seed)
    batch = max(1, min(n_resamples, 4_000_000 // n))
    means: list[np.ndarray] = []
    done = 0
    while done < n_resamples:
        size = min(batch, n_resamples - done)
        means.append(d[rng.integers(0, n, size=(size, n))].mean(axis=1))
        done += size
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.concatenate(means), [tail, 1.0 - tail])
    return float(low), float(high)


def unpaired_z_test(delta: float, stderr_before: float, stderr_after: float) -> float | None:
    """Two-sided normal p-value of a score difference from independent standard errors (None if both 0)."""
    scale = math.hypot(stderr_before, stderr_after)
    if not scale > 0.0:
        return None
    return math.erfc(abs(delta) / scale / math.sqrt(2.0))

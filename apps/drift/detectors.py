"""The statistics that decide whether a metric drifted (docs/drift.md#detectors).

Pure functions over counts and values, with scipy: a two-proportion z-test for rates, a
chi-square test with the population stability index (PSI) for distributions, Mann-Whitney U
(with the Kolmogorov-Smirnov distance reported beside it) for continuous values. A finding is
returned only when the difference is both significant (p below ``p_value``) and large enough
to matter (``min_shift`` points, ``psi`` or ``min_relative`` change), and only with enough
samples on both sides: noise must not page anyone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from scipy import stats

from .constants import Severity


@dataclass(frozen=True)
class Thresholds:
    """When a difference is a drift, and when a critical one (``DRIFT_*`` settings)."""

    p_value: float = 0.001
    critical_p_value: float = 1e-6
    min_baseline: int = 100
    min_current: int = 50
    min_shift: float = 0.03
    critical_shift: float = 0.10
    psi: float = 0.10
    critical_psi: float = 0.25
    min_relative: float = 0.15
    critical_relative: float = 0.50

    @classmethod
    def from_settings(cls) -> Thresholds:
        return cls(
            p_value=settings.DRIFT_P_VALUE,
            critical_p_value=settings.DRIFT_CRITICAL_P_VALUE,
            min_baseline=settings.DRIFT_MIN_BASELINE_SAMPLES,
            min_current=settings.DRIFT_MIN_CURRENT_SAMPLES,
            min_shift=settings.DRIFT_MIN_SHIFT,
            critical_shift=settings.DRIFT_CRITICAL_SHIFT,
            psi=settings.DRIFT_PSI,
            critical_psi=settings.DRIFT_CRITICAL_PSI,
            min_relative=settings.DRIFT_MIN_RELATIVE,
            critical_relative=settings.DRIFT_CRITICAL_RELATIVE,
        )


@dataclass(frozen=True)
class Finding:
    """A significant, material difference between a baseline and a current window."""

    test: str  # "two_proportion_z", "chi_square", "mann_whitney"
    statistic: float
    p_value: float
    subject: str  # the rate, the label or the median that moved
    baseline_value: float
    current_value: float
    baseline_n: int
    current_n: int
    severity: str
    psi: float | None = None
    ks: float | None = None
    shares: dict[str, list[float]] = field(default_factory=dict)

    @property
    def rises(self) -> bool:
        return self.current_value > self.baseline_value


def _severity(critical: bool) -> str:
    return Severity.CRITICAL if critical else Severity.WARNING


def proportion(
    baseline_hits: int, baseline_n: int, current_hits: int, current_n: int, *, t: Thresholds
) -> Finding | None:
    """Two-proportion z-test (pooled) of a rate: errors per run, denials per decision, ..."""
    if baseline_n < t.min_baseline or current_n < t.min_current:
        return None
    before, now = baseline_hits / baseline_n, current_hits / current_n
    pooled = (baseline_hits + current_hits) / (baseline_n + current_n)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / baseline_n + 1 / current_n))
    shift = now - before
    if spread == 0 or abs(shift) < t.min_shift:
        return None
    z = shift / spread
    p = float(2 * stats.norm.sf(abs(z)))
    if p >= t.p_value:
        return None
    critical = p < t.critical_p_value and abs(shift) >= t.critical_shift
    return Finding(
        test="two_proportion_z", statistic=z, p_value=p, subject="rate", baseline_value=before,
        current_value=now, baseline_n=baseline_n, current_n=current_n,
        severity=_severity(critical),
    )  # fmt: skip


def psi_of(before: np.ndarray, now: np.ndarray) -> float:
    """Population stability index of two count vectors (half a count added to each cell, so
    a label seen on one side only counts without dividing by zero)."""
    b = (before + 0.5) / (before + 0.5).sum()
    c = (now + 0.5) / (now + 0.5).sum()
    return float(((c - b) * np.log(c / b)).sum())


def distribution(
    baseline: Mapping[str, int],
    current: Mapping[str, int],
    *,
    baseline_runs: int,
    current_runs: int,
    t: Thresholds,
) -> Finding | None:
    """Chi-square test of two label distributions (outcomes, tool calls), with PSI; the
    subject is the label whose share moved most."""
    if baseline_runs < t.min_baseline or current_runs < t.min_current:
        return None
    labels = sorted(set(baseline) | set(current))
    if len(labels) < 2:
        return None
    before = np.array([baseline.get(label, 0) for label in labels], dtype=float)
    now = np.array([current.get(label, 0) for label in labels], dtype=float)
    if before.sum() == 0 or now.sum() == 0:
        return None
    chi2, p, _, _ = stats.chi2_contingency(np.vstack([before, now]), correction=False)
    shares_before, shares_now = before / before.sum(), now / now.sum()
    moved = np.abs(shares_now - shares_before)
    top = int(moved.argmax())
    psi = psi_of(before, now)
    if p >= t.p_value or (psi < t.psi and moved[top] < t.min_shift):
        return None
    critical = p < t.critical_p_value and (psi >= t.critical_psi or moved[top] >= t.critical_shift)
    return Finding(
        test="chi_square", statistic=float(chi2), p_value=float(p), subject=labels[top],
        baseline_value=float(shares_before[top]), current_value=float(shares_now[top]),
        baseline_n=baseline_runs, current_n=current_runs, severity=_severity(critical), psi=psi,
        shares={
            label: [round(float(b), 4), round(float(c), 4)]
            for label, b, c in zip(labels, shares_before, shares_now, strict=True)
        },
    )  # fmt: skip


def continuous(
    baseline: Sequence[float], current: Sequence[float], *, t: Thresholds
) -> Finding | None:
    """Mann-Whitney U test of two samples (tokens, cost, latency, a custom metric); the
    subject is the median (the mean when the baseline's median is zero)."""
    if len(baseline) < t.min_baseline or len(current) < t.min_current:
        return None
    before, now = np.asarray(baseline, dtype=float), np.asarray(current, dtype=float)
    subject, b, c = "median", float(np.median(before)), float(np.median(now))
    if b == 0:
        subject, b, c = "mean", float(before.mean()), float(now.mean())
    if b == 0 or abs(c - b) / abs(b) < t.min_relative:
        return None
    u, p = stats.mannwhitneyu(before, now, alternative="two-sided")
    if p >= t.p_value:
        return None
    ks = float(stats.ks_2samp(before, now).statistic)
    critical = p < t.critical_p_value and abs(c - b) / abs(b) >= t.critical_relative
    return Finding(
        test="mann_whitney", statistic=float(u), p_value=float(p), subject=subject,
        baseline_value=b, current_value=c, baseline_n=len(before), current_n=len(now),
        severity=_severity(critical), ks=ks,
    )  # fmt: skip


def onset_index(values: Sequence[float], reference: float, *, rising: bool) -> int:
    """Where a shift away from ``reference`` most likely began in a time-ordered series (the
    CUSUM estimate: after the lowest point of the cumulative sum for a rise, the highest for
    a fall)."""
    if not len(values):
        return 0
    walk = np.cumsum(np.asarray(values, dtype=float) - reference)
    turn = int(walk.argmin() if rising else walk.argmax())
    at_start = (walk[turn] >= 0) if rising else (walk[turn] <= 0)
    return 0 if at_start else min(turn + 1, len(values) - 1)

"""The detectors on known data: they find real differences, stay quiet on noise and on too few
samples, and grade severity."""

from __future__ import annotations

import numpy as np
import pytest

from apps.drift.constants import Severity
from apps.drift.detectors import (
    Thresholds,
    continuous,
    distribution,
    onset_index,
    proportion,
    psi_of,
)

T = Thresholds()


def test_a_six_point_rise_in_a_rate_over_a_thousand_runs_is_a_drift():
    finding = proportion(850, 1000, 910, 1000, t=T)
    assert finding is not None
    assert finding.test == "two_proportion_z"
    assert finding.p_value < 0.001
    assert (finding.baseline_value, finding.current_value) == (0.85, 0.91)
    assert finding.severity == Severity.WARNING


def test_the_same_rise_over_fifty_runs_is_not_significant():
    assert proportion(85, 100, 46, 50, t=T) is None  # 85% → 92%, too few runs to tell


def test_a_significant_but_tiny_shift_is_not_material():
    # 50.0% → 51.5% over a million runs: p is tiny, 1.5 points is below the 3-point minimum.
    assert proportion(500_000, 1_000_000, 515_000, 1_000_000, t=T) is None


def test_too_few_baseline_samples_never_alert():
    assert proportion(40, 50, 900, 1000, t=T) is None


def test_a_large_highly_significant_shift_is_critical():
    finding = proportion(100, 1000, 300, 1000, t=T)
    assert finding is not None and finding.severity == Severity.CRITICAL


def test_a_distribution_that_moves_is_found_by_chi_square_with_its_psi_and_top_label():
    before = {"approved": 850, "rejected": 100, "escalated": 50}
    now = {"approved": 700, "rejected": 250, "escalated": 50}
    finding = distribution(before, now, baseline_runs=1000, current_runs=1000, t=T)
    assert finding is not None
    assert finding.test == "chi_square"
    assert finding.subject in ("approved", "rejected")
    assert finding.psi == pytest.approx(
        psi_of(np.array([850, 50, 100.0]), np.array([700, 50, 250.0]))
    )
    assert finding.shares["rejected"] == [0.1, 0.25]


def test_a_distribution_sampled_twice_from_the_same_shares_is_quiet():
    rng = np.random.default_rng(7)
    labels = ["a", "b", "c"]
    draws = [rng.choice(labels, size=2000, p=[0.6, 0.3, 0.1]) for _ in range(2)]
    counts = [{label: int((d == label).sum()) for label in labels} for d in draws]
    assert distribution(*counts, baseline_runs=2000, current_runs=2000, t=T) is None


def test_a_new_label_appearing_is_a_drift():
    finding = distribution(
        {"approved": 900, "rejected": 100}, {"approved": 800, "rejected": 100, "error": 100},
        baseline_runs=1000, current_runs=1000, t=T,
    )  # fmt: skip
    assert finding is not None and finding.subject == "error"


def test_latency_that_doubles_is_found_by_mann_whitney():
    rng = np.random.default_rng(1)
    before = rng.lognormal(mean=7.0, sigma=0.3, size=800)
    now = rng.lognormal(mean=7.0 + np.log(2), sigma=0.3, size=300)
    finding = continuous(before, now, t=T)
    assert finding is not None
    assert finding.test == "mann_whitney" and finding.subject == "median"
    assert finding.current_value / finding.baseline_value == pytest.approx(2, rel=0.15)
    assert finding.ks is not None and finding.ks > 0.5
    assert finding.severity == Severity.CRITICAL


def test_continuous_noise_from_one_distribution_is_quiet():
    rng = np.random.default_rng(2)
    assert continuous(rng.normal(100, 10, 1000), rng.normal(100, 10, 1000), t=T) is None


def test_a_ten_percent_median_move_is_below_the_materiality_threshold():
    rng = np.random.default_rng(3)
    assert continuous(rng.normal(100, 5, 2000), rng.normal(110, 5, 2000), t=T) is None


def test_the_onset_is_found_where_the_series_changes():
    values = [0.0] * 300 + [1.0] * 40 + [0.0] * 5 + [1.0] * 200
    rng = np.random.default_rng(4)
    noisy = [1.0 if rng.random() < (0.85 if i < 500 else 0.95) else 0.0 for i in range(900)]
    assert onset_index(values, 0.5, rising=True) == 300
    assert abs(onset_index(noisy, 0.9, rising=True) - 500) < 60
    assert onset_index([1.0] * 50, 0.5, rising=True) == 0

"""Simulation: the patient-level bootstrap intervals cover a known mean at about 95 %.

Each repetition draws clustered data with a known mean: 50 patients with 1 to
8 cases each, a patient effect (sd 0.08) shared by a patient's cases and case
noise (sd 0.05). Coverage over 300 seeded repetitions must lie within the
binomial 99.9 % band around 0.95 (about +-0.041). Resampling cases instead of
patients ignores the within-patient correlation and must under-cover, which
shows that the test can fail.
"""

from __future__ import annotations

import math

import numpy as np

from bench.aggregate import cluster_bootstrap_ci
from bench.compare import paired_statistics

REPETITIONS = 300
PATIENTS = 50
TRUE_MEAN = 0.7
NOMINAL = 0.95
# Two-sided 99.9 % normal band of a binomial proportion: z = 3.29.
BAND = 3.29 * math.sqrt(NOMINAL * (1 - NOMINAL) / REPETITIONS)


def _clustered(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    sizes = rng.integers(1, 9, PATIENTS)
    patients = np.repeat(np.arange(PATIENTS), sizes)
    effects = rng.normal(0.0, 0.08, PATIENTS)
    values = TRUE_MEAN + effects[patients] + rng.normal(0.0, 0.05, patients.size)
    return values, patients


def _coverage(resample_cases: bool) -> float:
    rng = np.random.default_rng(20240801)
    covered = 0
    for repetition in range(REPETITIONS):
        values, patients = _clustered(rng)
        labels = np.arange(values.size) if resample_cases else patients
        low, high = cluster_bootstrap_ci(values, labels.astype(str), n_resamples=400,
                                         seed=repetition)
        covered += low <= TRUE_MEAN <= high
    return covered / REPETITIONS


def test_patient_bootstrap_covers_at_the_nominal_rate():
    coverage = _coverage(resample_cases=False)
    assert abs(coverage - NOMINAL) <= BAND, coverage


def test_resampling_cases_under_covers_clustered_data():
    # Same data, cases resampled as if independent: intervals far too narrow.
    assert _coverage(resample_cases=True) < NOMINAL - 3 * BAND


def test_paired_difference_interval_covers_the_true_difference():
    rng = np.random.default_rng(7)
    covered = 0
    for repetition in range(REPETITIONS):
        values, patients = _clustered(rng)
        # Model b is better by 0.03 on average, with patient-dependent gains.
        gains = 0.03 + rng.normal(0.0, 0.04, PATIENTS)[patients] + rng.normal(
            0.0, 0.02, values.size)
        result = paired_statistics(gains, patients.astype(str), n_resamples=400,
                                   seed=repetition)
        covered += result["ci_low"] <= 0.03 <= result["ci_high"]
    assert abs(covered / REPETITIONS - NOMINAL) <= BAND, covered / REPETITIONS

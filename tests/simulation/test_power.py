"""``seeds_for_power``: how many seeds a paired comparison would need, checked against published
tables and against a simulation of the paired t-test itself."""

import numpy as np
import pytest
from scipy import stats

from medal.simulation.report import seeds_for_power


def _differences(dz: float) -> np.ndarray:
    """Per-seed differences with sample standard deviation 1 and mean ``dz``."""
    x = np.array([-1.0, 1.0, -0.5, 0.5])
    return x / x.std(ddof=1) + dz


@pytest.mark.parametrize("dz, n", [(0.2, 199), (0.5, 34), (0.8, 15), (1.0, 10)])
def test_matches_the_published_sample_sizes(dz, n):
    # Cohen (1988) / G*Power, "difference between two dependent means", two-sided alpha 0.05, power 0.8
    assert seeds_for_power(_differences(dz)) == n


def test_the_returned_n_reaches_the_power_and_one_fewer_does_not():
    rng = np.random.default_rng(0)
    dz = 1.0  # exact power 0.803 at n = 10, 0.748 at 9
    n = seeds_for_power(_differences(dz))

    def rejection_rate(k, trials=20000):
        d = rng.normal(dz, 1.0, size=(trials, k))  # the paired t-test, run `trials` times
        t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(k))
        return float(np.mean(np.abs(t) > stats.t.ppf(0.975, k - 1)))

    assert rejection_rate(n) >= 0.79
    assert rejection_rate(n - 1) < 0.78


def test_sign_scale_and_degenerate_inputs():
    d = np.array([0.004, 0.011, -0.002, 0.009, 0.006])
    assert seeds_for_power(d) == seeds_for_power(-d) == seeds_for_power(d * 100)
    assert seeds_for_power(d, power=0.9) > seeds_for_power(d)
    assert seeds_for_power([0.0, 0.0, 0.0]) is None          # no effect: no n detects it
    assert seeds_for_power([0.01]) is None                   # one seed: no spread to plan with
    assert seeds_for_power([0.01, 0.01, 0.01]) == 2          # no spread at all
    assert seeds_for_power([0.001, -0.001, 0.0011, -0.001]) is None  # beyond max_seeds

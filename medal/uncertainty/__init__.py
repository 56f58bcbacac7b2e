"""Uncertainty: the sources of samples (MC dropout, committees, test-time augmentation), the measures
(entropy, BALD, variance, vote entropy, ...) and calibration."""

from .calibration import expected_calibration_error, fit_temperature, nll, reliability
from .measures import (MEASURES, MCAccumulator, check_probs, expected_entropy, get_measure, kl_consensus,
                       least_confidence, margin, measures_from_moments, mutual_information, predictive_entropy,
                       variance, vote_entropy)

__all__ = ["MEASURES", "MCAccumulator", "check_probs", "expected_calibration_error", "expected_entropy",
           "fit_temperature", "get_measure", "kl_consensus", "least_confidence", "margin", "measures_from_moments",
           "mutual_information", "nll", "predictive_entropy", "reliability", "variance", "vote_entropy"]

# mc_dropout, predict_moments (sources), mc_predict and score_cases import torch: import them from their
# modules (medal.uncertainty.mc, .sources, .inference, .score) so that `import medal.uncertainty` stays light.

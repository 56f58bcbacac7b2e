"""MC-dropout sampling and the uncertainty measures (entropy, BALD, variance, ...)."""

from .measures import (MEASURES, MCAccumulator, check_probs, expected_entropy, get_measure, least_confidence, margin,
                       measures_from_moments, mutual_information, predictive_entropy, variance)

__all__ = ["MEASURES", "MCAccumulator", "check_probs", "expected_entropy", "get_measure", "least_confidence", "margin",
           "measures_from_moments", "mutual_information", "predictive_entropy", "variance"]

# mc_dropout, mc_predict and score_cases import torch: import them from their modules
# (medal.uncertainty.mc, .inference, .score) so that `import medal.uncertainty` stays light.

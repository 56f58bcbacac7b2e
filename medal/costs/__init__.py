"""Annotation-cost models: expected seconds of painting per unit, and their calibration."""

from .features import effort_features, feature_names
from .model import (DEFAULT_COEFFICIENTS, CostModel, append_annotation_log, fit_cost_model,
                    read_annotation_log)

__all__ = ["CostModel", "DEFAULT_COEFFICIENTS", "append_annotation_log", "effort_features", "feature_names",
           "fit_cost_model", "read_annotation_log"]

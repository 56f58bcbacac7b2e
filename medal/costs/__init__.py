"""Annotation-cost models: expected seconds of painting per unit, and their calibration."""

from .calibration import (CALIBRATIONS, CostCalibration, calibration_pairs, fit_calibration, fit_scale,
                          load_calibration)
from .features import (ANNOTATION_MODES, EXPECTED_LEVELS, cheaper_features, correction_features, drop_small_pieces,
                       effort_features, expected_correction_features, expected_effort_features, feature_names,
                       level_segmentation)
from .model import (DEFAULT_COEFFICIENTS, CostModel, append_annotation_log, fit_cost_model,
                    read_annotation_log)

__all__ = ["ANNOTATION_MODES", "CALIBRATIONS", "CostCalibration", "CostModel", "DEFAULT_COEFFICIENTS",
           "EXPECTED_LEVELS", "append_annotation_log", "calibration_pairs", "cheaper_features", "correction_features",
           "drop_small_pieces", "effort_features", "expected_correction_features", "expected_effort_features",
           "feature_names", "fit_calibration", "fit_cost_model", "fit_scale", "level_segmentation", "load_calibration",
           "read_annotation_log"]

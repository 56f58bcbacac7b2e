"""Label-efficiency simulation: the ground truth as the oracle, learning curves, AUBC, reports."""

from .oracle import full_annotation_cost, oracle_annotate, true_costs, unit_mask
from .merge import merge_runs
from .report import aubc, budget_to_reach, read_results, write_report
from .simulate import CSV_FIELDS, evaluate, simulate, split_cases

__all__ = ["CSV_FIELDS", "aubc", "budget_to_reach", "evaluate", "full_annotation_cost", "merge_runs", "oracle_annotate",
           "read_results", "simulate", "split_cases", "true_costs", "unit_mask", "write_report"]

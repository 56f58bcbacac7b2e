"""Running per-case work at scale: local and Ray executors, resumable keyed outputs, failure isolation."""

from .executors import EXECUTORS, LocalExecutor, RayExecutor, get_executor
from .regions import CaseRegions, RegionSpec, load_region_tables
from .run import BatchReport, score_dataset
from .work import KEY_FILE, CaseScorer, ScoreSpec, case_key, sweep_temp_files

__all__ = ["EXECUTORS", "KEY_FILE", "BatchReport", "CaseRegions", "CaseScorer", "RegionSpec", "load_region_tables", "LocalExecutor", "RayExecutor", "ScoreSpec",
           "case_key", "get_executor", "score_dataset", "sweep_temp_files"]

"""Candidate annotation units (2D slices, 3D supervoxels) and their region tables."""

from .table import AGGREGATIONS, RegionTable, aggregate, region_table
from .units import AXIS_NAMES, resolve_axis, slice_units, supervoxel_units

__all__ = ["AGGREGATIONS", "AXIS_NAMES", "RegionTable", "aggregate", "region_table", "resolve_axis", "slice_units",
           "supervoxel_units"]

"""Volumes and datasets in, labels out.

NIfTI via nibabel, NRRD / MHA / MHD via SimpleITK, one :class:`Volume` type; datasets in the
Medical Segmentation Decathlon / nnU-Net layout or plain folders; validation whose errors name the
file; atomic writes; the bundled hippocampus sample.
"""

from .atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from .cache import VolumeCache
from .check import CaseReport, DatasetReport, check_dataset
from .dataset import Case, Dataset, case_id_from_path, load_dataset, resolve_inside, scan_label_values
from .errors import DatasetError
from .io import VOLUME_SUFFIXES, WRITE_SUFFIXES, Volume, load_volume, save_volume, volume_shape, volume_spacing
from .labels import LABEL_DTYPE, UNLABELED, LabelMap, annotated_mask, empty_partial_labels, parse_label_names
from .loading import image_grid, load_case, load_label
from .normalize import NORMALIZERS, normalize_intensity
from .sample import sample_dataset

__all__ = [
    "Case", "CaseReport", "Dataset", "DatasetError", "DatasetReport", "LABEL_DTYPE", "LabelMap", "NORMALIZERS",
    "UNLABELED", "VOLUME_SUFFIXES", "VolumeCache", "WRITE_SUFFIXES", "Volume", "annotated_mask", "atomic_path",
    "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "case_id_from_path", "check_dataset",
    "empty_partial_labels", "image_grid", "load_case", "load_dataset", "load_label", "load_volume", "normalize_intensity",
    "parse_label_names", "resolve_inside", "sample_dataset", "save_volume", "scan_label_values", "volume_shape", "volume_spacing",
]

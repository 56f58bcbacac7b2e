"""Cold-start one-shot selection: no labels, no trained model (TypiClust on a label-free representation)."""

from .represent import pca, slice_descriptors
from .select import coldstart_select, kmeans, typicality

__all__ = ["coldstart_select", "kmeans", "pca", "slice_descriptors", "typicality"]

"""Cold-start one-shot selection: no labels, no trained model (TypiClust or ProbCover on a label-free
representation, predicted seconds from an image prior scaled by a timed pilot)."""

from .represent import pca, slice_descriptors
from .select import (METHODS, REPRESENTATIONS, coldstart_select, kmeans, pilot_scale, position_strata, probcover,
                     probcover_radius, slice_clusters, slice_cost_prior, slice_embeddings, typicality,
                     with_position)

__all__ = ["METHODS", "REPRESENTATIONS", "coldstart_select", "kmeans", "pca", "pilot_scale", "position_strata", "probcover",
           "probcover_radius", "slice_clusters", "slice_cost_prior", "slice_descriptors", "slice_embeddings", "typicality", "with_position"]

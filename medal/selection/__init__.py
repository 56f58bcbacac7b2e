"""Choosing what the expert annotates: the 0-1 knapsack and honest baselines, one registry."""

from .knapsack import KnapsackResult, knapsack, lp_bound
from .strategies import STRATEGIES, Selection, dominant_class, get_strategy, select

__all__ = ["KnapsackResult", "STRATEGIES", "Selection", "dominant_class", "get_strategy", "knapsack", "lp_bound",
           "select"]

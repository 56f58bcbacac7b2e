"""Uncertainty measures: pure functions on MC samples of class probabilities.

Array convention
----------------
Probability samples are ``(T, C, Z, Y, X)``: samples first, as ``torch.stack`` gives them. ``C >= 2``
holds softmax probabilities summing to one over ``C``; ``C == 1`` holds sigmoid probabilities of one
foreground class and the measures use the true binary forms. Every measure returns a float32
``(Z, Y, X)`` volume in which **higher means more uncertain**. Entropies are in nats.

:class:`MCAccumulator` computes the same measures from samples fed one at a time (or a few at a time),
so memory does not grow with ``T``: it keeps only the running mean of ``p``, of ``p**2`` and of the
per-sample entropy.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MEASURES", "check_probs", "get_measure", "predictive_entropy", "expected_entropy", "mutual_information",
    "variance", "margin", "least_confidence", "vote_entropy", "kl_consensus", "MCAccumulator", "measures_from_moments",
]

_EPS = 1e-12


def check_probs(probs, *, name: str = "probs") -> np.ndarray:
    """Validate MC probability samples ``(T, C, Z, Y, X)``; return them as a float array.

    Raises ``ValueError`` on the wrong number of axes, values outside [0, 1], NaN, or (for C >= 2)
    rows that do not sum to one, which usually means logits were passed instead of probabilities.
    """
    p = np.asarray(probs)
    if p.ndim != 5:
        raise ValueError(f"{name}: expected MC samples shaped (T, C, Z, Y, X), got {p.ndim} axes with shape {p.shape}")
    if p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"{name}: need at least one sample and one class, got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float32)
    if not np.isfinite(p).all():
        raise ValueError(f"{name}: contains NaN or Inf")
    lo, hi = float(p.min()), float(p.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{name}: values must be probabilities in [0, 1], got range [{lo:.4g}, {hi:.4g}] (logits?)")
    if p.shape[1] >= 2:
        total = p.sum(axis=1)
        worst = float(np.abs(total - 1).max())
        if worst > 1e-3:
            raise ValueError(f"{name}: class probabilities must sum to 1 over axis 1 (C), off by up to {worst:.4g}")
    return p


def _entropy_over_classes(p: np.ndarray, axis: int) -> np.ndarray:
    """Entropy over ``axis``; a single class means binary (sigmoid) entropy."""
    if p.shape[axis] == 1:
        q = np.clip(np.squeeze(p, axis=axis), 0.0, 1.0)
        return np.maximum(-(q * np.log(q + _EPS) + (1 - q) * np.log(1 - q + _EPS)), 0.0)
    return np.maximum(-(p * np.log(p + _EPS)).sum(axis=axis), 0.0)  # >= 0: the epsilon can tip a certain 0 below


def _as_binary(mean: np.ndarray) -> np.ndarray:
    """(C, ...) -> (2, ...) for sigmoid outputs, unchanged otherwise."""
    return np.concatenate([1 - mean, mean], axis=0) if mean.shape[0] == 1 else mean


def measures_from_moments(mean_p: np.ndarray, mean_p2: np.ndarray, mean_entropy: np.ndarray,
                          mean_vote: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """All measures from the running moments over samples (``(C, Z, Y, X)``, ``(C, ...)``, ``(Z, Y, X)``,
    and optionally the share of samples voting for each class ``(C, ...)``)."""
    pe = _entropy_over_classes(mean_p, axis=0)
    full = _as_binary(mean_p)
    top2 = np.sort(full, axis=0)[-2:]
    var = np.maximum(mean_p2 - mean_p ** 2, 0.0)
    out = {
        "entropy": pe,
        "expected_entropy": mean_entropy,
        "bald": np.maximum(pe - mean_entropy, 0.0),
        "variance": var.mean(axis=0),
        "margin": 1.0 - (top2[1] - top2[0]),
        "least_confidence": 1.0 - top2[1],
    }
    # mean KL divergence of the samples (committee members) to their consensus: H[E p] - E H[p]
    out["kl_consensus"] = out["bald"]
    if mean_vote is not None:
        out["vote_entropy"] = _entropy_over_classes(_as_binary(mean_vote), axis=0)
    return {k: v.astype(np.float32, copy=False) for k, v in out.items()}


def _moments(probs):
    p = check_probs(probs).astype(np.float64, copy=False)
    return p.mean(axis=0), (p ** 2).mean(axis=0), _entropy_over_classes(p, axis=1).mean(axis=0)


def predictive_entropy(probs) -> np.ndarray:
    """Entropy of the mean prediction, ``H[E_t p_t]`` (total uncertainty)."""
    p = check_probs(probs).astype(np.float64, copy=False)
    return _entropy_over_classes(p.mean(axis=0), axis=0).astype(np.float32)


def expected_entropy(probs) -> np.ndarray:
    """Mean entropy of the samples, ``E_t H[p_t]`` (aleatoric part)."""
    p = check_probs(probs).astype(np.float64, copy=False)
    return _entropy_over_classes(p, axis=1).mean(axis=0).astype(np.float32)


def mutual_information(probs) -> np.ndarray:
    """BALD: ``H[E p] - E H[p]`` (epistemic part; 0 when all samples agree)."""
    return measures_from_moments(*_moments(probs))["bald"]


def variance(probs) -> np.ndarray:
    """Variance of the class probabilities over samples, averaged over classes."""
    return measures_from_moments(*_moments(probs))["variance"]


def margin(probs) -> np.ndarray:
    """``1 - (p_first - p_second)`` of the mean prediction."""
    return measures_from_moments(*_moments(probs))["margin"]


def least_confidence(probs) -> np.ndarray:
    """``1 - max_c E p_c``."""
    return measures_from_moments(*_moments(probs))["least_confidence"]


def _votes(probs) -> np.ndarray:
    p = check_probs(probs)
    if p.shape[1] == 1:
        p = np.concatenate([1 - p, p], axis=1)
    onehot = np.eye(p.shape[1])[p.argmax(axis=1)]  # (T, ..., C)
    return np.moveaxis(onehot, -1, 1).mean(axis=0)


def vote_entropy(probs) -> np.ndarray:
    """Entropy of the committee's votes (the share of samples whose argmax is each class): a
    query-by-committee measure, 0 when every member predicts the same class."""
    return _entropy_over_classes(_votes(probs), axis=0).astype(np.float32)


def kl_consensus(probs) -> np.ndarray:
    """Mean KL divergence of each sample to the consensus ``E p`` (equals BALD)."""
    return mutual_information(probs)


#: name -> function(probs (T, C, Z, Y, X)) -> (Z, Y, X). "mutual_information" is an alias of "bald".
MEASURES = {
    "entropy": predictive_entropy,
    "expected_entropy": expected_entropy,
    "bald": mutual_information,
    "mutual_information": mutual_information,
    "variance": variance,
    "margin": margin,
    "least_confidence": least_confidence,
    "vote_entropy": vote_entropy,
    "kl_consensus": kl_consensus,
}


def get_measure(name: str):
    """The measure called ``name``; an unknown name raises listing the valid ones."""
    try:
        return MEASURES[name]
    except KeyError:
        raise KeyError(f"unknown uncertainty measure {name!r}; valid: {sorted(MEASURES)}") from None


class MCAccumulator:
    """Streaming moments of MC samples; memory is independent of the number of samples.

    >>> acc = MCAccumulator()
    >>> for p in samples:          # each (C, Z, Y, X), or a batch (B, C, Z, Y, X)
    ...     acc.update(p)
    >>> acc.measures(["entropy", "bald"])
    """

    def __init__(self):
        self.n = 0
        self._sum_p = self._sum_p2 = self._sum_h = None

    def update(self, probs) -> None:
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim == 4:
            p = p[None]
        p = check_probs(p, name="sample")
        if self._sum_p is None:
            self._sum_p = np.zeros(p.shape[1:])
            self._sum_p2 = np.zeros(p.shape[1:])
            self._sum_h = np.zeros(p.shape[2:])
            self._sum_vote = np.zeros((max(p.shape[1], 2), *p.shape[2:]))
        elif p.shape[1:] != self._sum_p.shape:
            raise ValueError(f"sample shape {p.shape[1:]} does not match earlier samples {self._sum_p.shape}")
        self._sum_p += p.sum(axis=0)
        self._sum_p2 += (p ** 2).sum(axis=0)
        self._sum_vote += _votes(p) * p.shape[0]
        self._sum_h += _entropy_over_classes(p, axis=1).sum(axis=0)
        self.n += p.shape[0]

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.n == 0:
            raise ValueError("no samples accumulated")
        return self._sum_p / self.n, self._sum_p2 / self.n, self._sum_h / self.n

    def mean_probs(self) -> np.ndarray:
        return self.moments()[0].astype(np.float32)

    def measures(self, names=None) -> dict[str, np.ndarray]:
        names = list(names) if names is not None else ["entropy", "bald"]
        for n in names:
            get_measure(n)
        all_ = measures_from_moments(*self.moments(), self._sum_vote / self.n)
        all_["mutual_information"] = all_["bald"]
        return {n: all_[n] for n in names}

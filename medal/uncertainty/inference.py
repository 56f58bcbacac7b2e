"""Sliding-window inference, deterministic and MC dropout.

For MC dropout each window runs the network's deterministic part once and its stochastic part
``n_samples`` times, in batches of ``sample_batch`` samples. Each window returns running moments
(mean ``p``, mean ``p**2``, mean per-sample entropy): they are means, so MONAI's
``sliding_window_inference`` can blend overlapping windows linearly, and the measures are computed
from the blended moments at the end. Memory depends on ``sample_batch``, never on ``n_samples``.
"""

from __future__ import annotations

import numpy as np
import torch

from medal.uncertainty.mc import mc_dropout
from medal.uncertainty.measures import measures_from_moments

__all__ = ["predict_probs", "predict_logits", "mc_predict", "MCResult"]

#: voxels per slab in :meth:`MCResult.measures` (float64 temporaries of ~15 arrays of this size)
SLAB_VOXELS = 1 << 20


def _to_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def _probs_and_entropy(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``(n, C, ...)`` and their entropy ``(n, ...)`` from logits, in one pass."""
    if logits.shape[1] == 1:
        q = torch.sigmoid(logits)
        # binary entropy from logits: softplus(z) - z * sigmoid(z)
        h = (torch.nn.functional.softplus(logits) - logits * q)[:, 0]
        return q, h
    logp = torch.log_softmax(logits, dim=1)
    p = logp.exp()
    return p, -(p * logp).sum(dim=1)


def _window_input(image: np.ndarray, device) -> torch.Tensor:
    x = np.asarray(image, dtype=np.float32)
    if not x.flags.writeable:  # a case read by memory map (training.items_in_memory_gb): torch wants its own copy
        x = x.copy()
    x = torch.as_tensor(x, device=device)
    return x[None, None] if x.ndim == 3 else x[None]


def _sliding(fn, x, roi_size, overlap):
    from monai.inferers import sliding_window_inference

    return sliding_window_inference(x, roi_size=roi_size, sw_batch_size=1, predictor=fn, overlap=overlap,
                                    mode="gaussian", padding_mode="constant")


@torch.no_grad()
def predict_probs(net, image: np.ndarray, *, roi_size=(32, 48, 32), overlap: float = 0.25, device="cpu") -> np.ndarray:
    """One deterministic pass (eval mode, dropout off): class probabilities ``(C, Z, Y, X)``."""
    was = net.training
    net.eval()
    try:
        x = _window_input(image, device)
        out = _sliding(lambda w: _to_probs(net(w)), x, roi_size, overlap)
    finally:
        net.train(was)
    return out[0].cpu().numpy()


@torch.no_grad()
def predict_logits(net, image: np.ndarray, *, roi_size=(32, 48, 32), overlap: float = 0.25, device="cpu") -> np.ndarray:
    """One deterministic pass (eval mode): logits ``(C, Z, Y, X)`` (what temperature scaling is fitted on)."""
    was = net.training
    net.eval()
    try:
        out = _sliding(lambda w: net(w), _window_input(image, device), roi_size, overlap)
    finally:
        net.train(was)
    return out[0].cpu().numpy()


class MCResult:
    """Mean probabilities and the moments every measure is computed from."""

    def __init__(self, mean_p: np.ndarray, mean_p2: np.ndarray, mean_entropy: np.ndarray, n_samples: int,
                 mean_vote: np.ndarray | None = None):
        self.mean_probs, self.mean_p2, self.mean_entropy, self.n_samples = mean_p, mean_p2, mean_entropy, n_samples
        self.mean_vote = mean_vote  # share of samples voting for each class (None: not tracked)

    def prediction(self) -> np.ndarray:
        """Label map of the mean prediction (uint8)."""
        if self.mean_probs.shape[0] == 1:
            return (self.mean_probs[0] >= 0.5).astype(np.uint8)
        return self.mean_probs.argmax(axis=0).astype(np.uint8)

    def full_probs(self) -> np.ndarray:
        """Mean probabilities of every class ``(C, ...)``, background included (sigmoid outputs: 2)."""
        p = self.mean_probs
        return np.concatenate([1 - p, p], axis=0) if p.shape[0] == 1 else p

    def measures(self, names) -> dict[str, np.ndarray]:
        """The named measures (float32, the volume's shape), computed in float64 slabs along the last axis of
        about :data:`SLAB_VOXELS` voxels each: every measure is per voxel, so the result is the whole volume's bit
        for bit, while the float64 temporaries stay a slab's (a whole 512x512x300 CT's were ~20 GB)."""
        names = list(names)
        if "vote_entropy" in names and self.mean_vote is None:
            raise ValueError("measure(s) ['vote_entropy'] need the samples' votes, which this result did not track")
        shape = self.mean_entropy.shape
        out = {n: np.empty(shape, np.float32) for n in names}
        step = max(1, SLAB_VOXELS // max(1, int(np.prod(shape[:-1]))))
        for z0 in range(0, shape[-1], step):
            sl = (Ellipsis, slice(z0, z0 + step))
            vote = None if self.mean_vote is None else self.mean_vote[sl].astype(np.float64)
            allm = measures_from_moments(self.mean_probs[sl].astype(np.float64), self.mean_p2[sl].astype(np.float64),
                                         self.mean_entropy[sl].astype(np.float64), vote)
            allm["mutual_information"] = allm["bald"]
            unknown = [n for n in names if n not in allm]
            if unknown:
                raise ValueError(f"unknown measure(s) {unknown}")
            for n in names:
                out[n][sl] = allm[n]
        return out


@torch.no_grad()
def mc_predict(net, image: np.ndarray, *, n_samples: int = 20, sample_batch: int = 10, roi_size=(32, 48, 32),
               overlap: float = 0.25, device="cpu", seed: int | None = 0) -> MCResult:
    """MC-dropout moments for one normalised volume ``(Z, Y, X)`` (or ``(channels, Z, Y, X)``)."""
    if n_samples < 1 or sample_batch < 1:
        raise ValueError(f"n_samples and sample_batch must be >= 1, got {n_samples}, {sample_batch}")
    if seed is not None:
        torch.manual_seed(seed)

    def window(w):
        state = net.deterministic(w)
        sum_p = sum_p2 = sum_h = None
        done = 0
        while done < n_samples:
            k = min(sample_batch, n_samples - done)
            p, h = _probs_and_entropy(net.sample_logits(state, k))
            sp, sp2, sh = p.sum(0, keepdim=True), (p * p).sum(0, keepdim=True), h.sum(0)[None, None]
            sum_p = sp if sum_p is None else sum_p + sp
            sum_p2 = sp2 if sum_p2 is None else sum_p2 + sp2
            sum_h = sh if sum_h is None else sum_h + sh
            done += k
        return torch.cat([sum_p, sum_p2, sum_h], dim=1) / n_samples

    with mc_dropout(net):
        out = _sliding(window, _window_input(image, device), roi_size, overlap)[0].cpu().numpy()
    c = (out.shape[0] - 1) // 2
    return MCResult(out[:c], out[c:2 * c], out[2 * c], n_samples)

"""Where uncertainty comes from: one registry of sources, all streaming the same moments.

Every source produces samples of class probabilities in the ``(T, C, Z, Y, X)`` convention, but
never holds them: each sliding window returns the running sums of ``p``, ``p**2``, the per-sample
entropy and the per-sample vote (one-hot argmax), so memory does not grow with ``T`` and every
measure (entropy, BALD, variance, margin, vote entropy, ...) works on every source.

``mc_dropout``
    The network's own dropout (``model.placement``: ``head``, ``decoder`` or ``monai``), ``T`` samples.
``committee``
    ``K`` models, one deterministic pass each: the snapshots a training run saved on its way
    (``training.snapshots``, at no extra training cost; Huang et al., "Snapshot Ensembles", ICLR
    2017) or separately trained members; one checkpoint file, one hash. Query-by-committee measures:
    vote entropy and mean KL to the consensus (modAL's committee measures; Seung et al. 1992).
``tta``
    Test-time augmentation: the deterministic net on every combination of flips along
    ``uncertainty.tta_axes`` (and, with ``tta_jitter``, a small random intensity scale and shift),
    each prediction flipped back (Wang et al., "Aleatoric uncertainty estimation with test-time
    augmentation for medical image segmentation", Neurocomputing 2019).
``committee_dropout`` / ``tta_dropout``
    The combinations: ``ceil(T / K)`` dropout samples for each member or each augmentation.

Logits are divided by the checkpoint's temperature (temperature scaling, fitted on annotated
validation voxels: :mod:`medal.uncertainty.calibration`) before the softmax, for every source.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["SOURCES", "get_source", "predict_moments", "flip_sets"]

SOURCES = ("mc_dropout", "committee", "tta", "committee_dropout", "tta_dropout")


def get_source(name: str) -> str:
    if name not in SOURCES:
        raise KeyError(f"unknown uncertainty source {name!r}; valid: {sorted(SOURCES)}")
    return name


def flip_sets(axes) -> list[tuple[int, ...]]:
    """Every subset of ``axes`` (the identity first): the flips of test-time augmentation."""
    axes = tuple(int(a) for a in axes)
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def _probs_entropy_vote(logits, temperature: float, votes: bool = True):
    """Probabilities, entropy and one-hot vote of each sample. The vote is the first class of highest
    probability (``argmax``'s tie rule), found with elementwise comparisons over the few classes:
    torch's ``argmax`` over the channel axis of a ``(k, C, Z, Y, X)`` tensor was 45% of MC scoring
    time on a 2-core CPU (``benchmarks/uncertainty_quality.py``)."""
    import torch

    z = logits / temperature
    if z.shape[1] == 1:
        q = torch.sigmoid(z)
        p = torch.cat([1 - q, q], dim=1)
        logp = torch.log(p.clamp_min(1e-12))
    else:
        logp = torch.log_softmax(z, dim=1)
        p = logp.exp()
    h = -(p * logp).sum(dim=1)
    if not votes:
        return p, h, None
    best, idx = p[:, 0], torch.zeros(p[:, 0].shape, dtype=torch.uint8, device=p.device)
    for c in range(1, p.shape[1]):
        better = p[:, c] > best
        best = torch.where(better, p[:, c], best)
        idx = torch.where(better, torch.tensor(c, dtype=torch.uint8, device=p.device), idx)
    classes = torch.arange(p.shape[1], dtype=torch.uint8, device=p.device).view(1, -1, *([1] * (p.ndim - 2)))
    vote = (idx[:, None] == classes).to(p.dtype)
    return p, h, vote


def _window_sums(sample_fn, n: int, sample_batch: int, temperature: float, votes: bool = True):
    """A sliding-window predictor returning, per window, the sums over ``n`` samples of
    ``(p, p**2, H, vote)`` stacked on the channel axis; ``sample_fn(window)`` gives ``draw(k)``, which
    returns k logit samples (what does not vary between samples is computed once per window)."""
    import torch

    def window(w):
        draw = sample_fn(w)
        sums = None
        done = 0
        while done < n:
            k = min(sample_batch, n - done)
            p, h, vote = _probs_entropy_vote(draw(k), temperature, votes)
            parts = [p.sum(0, keepdim=True), (p * p).sum(0, keepdim=True), h.sum(0)[None, None]]
            part = torch.cat(parts + ([vote.sum(0, keepdim=True)] if votes else []), dim=1)
            sums = part if sums is None else sums + part
            done += k
        return sums
    return window


def _sliding(fn, x, roi_size, overlap):
    from monai.inferers import sliding_window_inference

    return sliding_window_inference(x, roi_size=roi_size, sw_batch_size=1, predictor=fn, overlap=overlap,
                                    mode="gaussian", padding_mode="constant")


def _stochastic(net):
    def fn(w):
        state = net.deterministic(w)  # once per window, not once per batch of samples
        return lambda k: net.sample_logits(state, k)
    return fn


def _deterministic(net):
    def fn(w):
        out = net(w)
        return lambda k: out.expand(k, *out.shape[1:]) if k > 1 else out
    return fn


def predict_moments(nets, image: np.ndarray, *, source: str = "mc_dropout", n_samples: int = 20,
                    sample_batch: int = 10, roi_size=(32, 48, 32), overlap: float = 0.25, device="cpu",
                    seed: int | None = 0, tta_axes=(0, 1, 2), tta_jitter: float = 0.0, temperature: float = 1.0,
                    votes: bool = True):
    """Moments of the class-probability samples of ``source`` for one normalised volume ``(Z, Y, X)``.

    ``nets``: one network (``mc_dropout``, ``tta``, ``tta_dropout``) or the committee's members.
    Returns a :class:`~medal.uncertainty.inference.MCResult`; the same seed gives the same result.
    ``votes``: also count each sample's vote (needed by ``vote_entropy`` only; costs about 0.2 passes).
    """
    import torch

    with torch.no_grad():
        return _predict_moments(nets, image, source=source, n_samples=n_samples, sample_batch=sample_batch,
                                roi_size=roi_size, overlap=overlap, device=device, seed=seed, tta_axes=tta_axes,
                                tta_jitter=tta_jitter, temperature=temperature, votes=votes)


def _predict_moments(nets, image, *, source, n_samples, sample_batch, roi_size, overlap, device, seed, tta_axes,
                     tta_jitter, temperature, votes=True):
    import torch

    from medal.uncertainty.inference import MCResult
    from medal.uncertainty.mc import mc_dropout

    get_source(source)
    nets = list(nets) if isinstance(nets, (list, tuple)) else [nets]
    if not nets:
        raise ValueError("no network given")
    if source.startswith("committee") and len(nets) < 2:
        raise ValueError(f"source {source!r} needs a committee of at least 2 models, got {len(nets)}")
    if n_samples < 1 or sample_batch < 1:
        raise ValueError(f"n_samples and sample_batch must be >= 1, got {n_samples}, {sample_batch}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if seed is not None:
        torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x0 = torch.as_tensor(np.asarray(image, dtype=np.float32), device=device)
    x0 = x0[None, None] if x0.ndim == 3 else x0[None]
    spatial = tuple(range(2, 5))

    # (net, flip axes of the volume, intensity (scale, shift), samples, stochastic?)
    if source == "mc_dropout":
        groups = [(nets[0], (), (1.0, 0.0), n_samples, True)]
    elif source in ("committee", "committee_dropout"):
        k = math.ceil(n_samples / len(nets)) if source == "committee_dropout" else 1
        groups = [(m, (), (1.0, 0.0), k, source == "committee_dropout") for m in nets]
    else:
        flips = flip_sets(tta_axes)
        k = math.ceil(n_samples / len(flips)) if source == "tta_dropout" else 1
        groups = []
        for n, f in enumerate(flips):
            jit = (1.0, 0.0) if n == 0 or not tta_jitter else (1.0 + rng.normal(0, tta_jitter), rng.normal(0, tta_jitter))
            groups.append((nets[0], f, jit, k, source == "tta_dropout"))
    total, sums = 0, None
    for net, flip, (scale, shift), k, stochastic in groups:
        x = x0 * scale + shift
        dims = tuple(spatial[a] for a in flip)
        if dims:
            x = torch.flip(x, dims)
        was = net.training
        try:
            if stochastic:
                with mc_dropout(net):
                    out = _sliding(_window_sums(_stochastic(net), k, sample_batch, temperature, votes), x, roi_size, overlap)
            else:
                net.eval()
                out = _sliding(_window_sums(_deterministic(net), 1, 1, temperature, votes), x, roi_size, overlap)
        finally:
            net.train(was)
        if dims:
            out = torch.flip(out, dims)
        sums = out if sums is None else sums + out
        total += k if stochastic else 1
    arr = (sums[0] / total).cpu().numpy()
    if not votes:
        c = (arr.shape[0] - 1) // 2
        return MCResult(arr[:c], arr[c:2 * c], arr[2 * c], total)
    c = (arr.shape[0] - 1) // 3
    return MCResult(arr[:c], arr[c:2 * c], arr[2 * c], total, mean_vote=arr[2 * c + 1:])

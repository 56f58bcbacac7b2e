"""Per-slice gradient embeddings: what ``selection.strategy: badge`` spreads a batch over.

BADGE (Ash, Zhang, Krishnamurthy, Langford & Agarwal, "Deep Batch Active Learning by Diverse, Uncertain
Gradient Lower Bounds", ICLR 2020; reference code github.com/JordanAsh/badge) represents a candidate by the
gradient of its loss with respect to the network's last layer, taking the model's own prediction as the label:
the norm is large where the model is unsure, and the direction says what the label would change. It then picks a
batch by k-means++ seeding in that space, so the batch is uncertain *and* spread out.

For a segmentation unit (a slice) the loss is the sum of the voxels' cross-entropies, so its gradient with respect
to the last 1x1x1 convolution (``head_out``: weight ``(C, H)``, bias ``(C,)``) is

    G[c, k] = sum over the slice's voxels x of (p_c(x) - [c == argmax p(x)]) * h_k(x)

with ``h`` the head's hidden features (dropout off) and a constant 1 appended for the bias. A voxel the model calls
confidently has ``p - onehot ~ 0`` and adds nothing: a confidently predicted slice sits at the origin.

``selection.badge_weighting: foreground`` reads a second set in which each voxel's term is weighted by its
predicted foreground probability ``1 - p_0(x)`` (the class-stratified weighting of ClaSP PE, Lueth et al. 2025,
moved inside the gradient), so the many background voxels of a slice weigh less than its foreground ones.

Stored per case as ``scores/<case_id>/gradient_embedding.npz`` with one array per array axis, ``axis0``,
``axis1``, ``axis2`` of shape ``(n_slices, C, H + 1)`` float32, and the foreground-weighted ``fg_axis0`` ..
``fg_axis2`` (a few kB per case). Computing it is one
deterministic pass of the network over the case; it holds the ``H`` hidden channels of the whole volume in memory
(``model.head_channels`` floats per voxel).

With ``data.spacing`` set the network sees the case on its own training grid (:mod:`medal.data.resample`), but the
units are the case's own slices. The hidden features ``h`` are then interpolated trilinearly back to the case's
grid, one channel at a time, before the last layer, the softmax and the sums above: the head is a 1x1x1
convolution, so this is the same last layer applied to the same interpolated features the score volumes are made
of (probabilities back on the case's grid, prediction = their argmax), and every slice gets its own embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["EMBEDDING_FILE", "WEIGHTINGS", "embedding_path", "ensure_gradient_embeddings", "gradient_embeddings",
           "has_gradient_embeddings", "load_gradient_embeddings", "save_gradient_embeddings", "write_case_embeddings"]

EMBEDDING_FILE = "gradient_embedding.npz"
#: ``selection.badge_weighting`` values: every voxel alike (BADGE), or weighted by predicted foreground probability
WEIGHTINGS = ("none", "foreground")


def embedding_path(out_dir, case_id: str) -> Path:
    """Where a case's gradient embeddings lie, beside its score volumes (``out_dir/scores/<case_id>/``)."""
    return Path(out_dir) / "scores" / case_id / EMBEDDING_FILE


def gradient_embeddings(net, image: np.ndarray, *, roi_size=(32, 48, 32), overlap: float = 0.25, device="cpu",
                        temperature: float = 1.0, weightings=("none",), grid=None) -> dict:
    """BADGE's last-layer gradient embedding of every slice along each array axis of a normalised ``image``.

    ``net``: a network with ``placement: head`` (or a committee: its first member). Returns
    ``{axis: (n_slices, C, H + 1) float32}``; see the module docstring for the formula. With ``weightings``
    holding ``"foreground"`` it also returns ``{("foreground", axis): ...}``: each voxel's term weighted by
    its predicted foreground probability (1 - p of class 0; p itself for a one-channel sigmoid).
    ``grid``: a :class:`~medal.data.resample.NetworkGrid`: ``image`` is on the network's grid (``data.spacing``,
    ``data.orientation``) and the slices are those of its case: the hidden features go back to the case's grid
    before the last layer (see the module docstring).
    """
    bad = sorted(set(weightings) - set(WEIGHTINGS))
    if bad:
        raise ValueError(f"gradient embedding weighting {bad[0]!r} is not one of {list(WEIGHTINGS)}")
    import torch

    from medal.uncertainty.inference import _sliding, _window_input

    if isinstance(net, (list, tuple)):
        net = net[0]
    if getattr(net, "placement", None) != "head":
        raise ValueError("gradient embeddings (selection.strategy: badge) need model.placement: head, got "
                         f"{getattr(net, 'placement', type(net).__name__)!r}")
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            x = _window_input(image, device)
            h = _sliding(lambda w: net.deterministic(w), x, roi_size, overlap)[0]  # (H, Z, Y, X)
            if grid is not None and not grid.identity:
                h = _features_to_case_grid(h, grid)
            w, b = net.head_out.weight, net.head_out.bias  # (C, H, 1, 1, 1), (C,)
            logits = torch.einsum("ch,hzyx->czyx", w.reshape(w.shape[0], -1), h) + b.reshape(-1, 1, 1, 1)
            logits = logits / temperature
            if logits.shape[0] == 1:  # one channel: sigmoid, the "label" is the thresholded prediction
                p = torch.sigmoid(logits)
                g = p - (p > 0.5).to(p.dtype)
            else:
                p = torch.softmax(logits, dim=0)
                g = p - torch.nn.functional.one_hot(p.argmax(0), p.shape[0]).permute(3, 0, 1, 2).to(p.dtype)
            hb = torch.cat([h, torch.ones_like(h[:1])], dim=0)  # (H + 1, ...): the bias's input
            out = {}
            for weighting in dict.fromkeys(weightings):
                gw = g if weighting == "none" else g * (p if p.shape[0] == 1 else 1.0 - p[:1])
                per_axis = {0: torch.einsum("czyx,kzyx->zck", gw, hb), 1: torch.einsum("czyx,kzyx->yck", gw, hb),
                            2: torch.einsum("czyx,kzyx->xck", gw, hb)}
                out.update(per_axis if weighting == "none" else {(weighting, a): v for a, v in per_axis.items()})
    finally:
        net.train(was)
    return {a: v.cpu().numpy().astype(np.float32) for a, v in out.items()}


def _features_to_case_grid(h, grid):
    """Hidden features ``(H, z, y, x)`` (a torch tensor) on the case's grid of ``grid`` (a
    :class:`~medal.data.resample.NetworkGrid`), trilinearly, one channel at a time (so at most one channel is
    held twice)."""
    import torch

    out = torch.empty((h.shape[0], *grid.case_shape), dtype=h.dtype, device=h.device)
    for k in range(h.shape[0]):
        out[k] = torch.from_numpy(np.ascontiguousarray(grid.to_case(h[k].cpu().numpy()))).to(out)
    return out


def write_case_embeddings(nets, x: np.ndarray, out_dir, case_id: str, *, ucfg, device="cpu",
                          temperature: float = 1.0, grid=None) -> Path:
    """:func:`gradient_embeddings` of one normalised image ``x`` (``(Z, Y, X)`` or ``(C, Z, Y, X)``, on its case's
    own grid), written to its case's file under ``out_dir``. ``grid``: the case's
    :class:`~medal.data.resample.NetworkGrid` (``None``: the network sees the case as it is): the network sees
    ``x`` on its grid, the slices stay the case's."""
    if grid is not None and tuple(grid.case_shape) != tuple(x.shape[-3:]):
        raise ValueError(f"network grid of a case of shape {grid.case_shape} given an image of shape {x.shape}")
    if grid is not None and not grid.identity:
        x = grid.to_network(x)
    emb = gradient_embeddings(nets, x, roi_size=ucfg.roi_size, overlap=ucfg.overlap, device=device,
                              temperature=temperature, weightings=WEIGHTINGS, grid=grid)
    return save_gradient_embeddings(embedding_path(out_dir, case_id), emb)


def _key(k) -> str:
    return f"axis{k}" if not isinstance(k, tuple) else ("" if k[0] == "none" else "fg_") + f"axis{k[1]}"


def save_gradient_embeddings(path, embeddings: dict) -> Path:
    """Write ``{axis: array}`` (and ``{("foreground", axis): array}``) to ``path`` (``.npz``), atomically."""
    from medal.data import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{_key(k): np.asarray(v, dtype=np.float32) for k, v in embeddings.items()})
    return Path(path)


def has_gradient_embeddings(path, weightings=WEIGHTINGS) -> bool:
    """Whether ``path`` holds the embeddings of every weighting in ``weightings`` (a file written before
    ``foreground`` existed holds only ``none``'s)."""
    if isinstance(weightings, str):
        weightings = (weightings,)
    try:
        with np.load(path) as z:
            return all(_key((w, 0)) in z.files for w in weightings)
    except (OSError, ValueError):
        return False


def load_gradient_embeddings(path, axis: int, weighting: str = "none") -> np.ndarray:
    """One axis's ``(n_slices, C, H + 1)`` embeddings from :func:`save_gradient_embeddings`' file (``weighting``:
    ``none`` or ``foreground``); a missing or unreadable file is a ``ValueError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no gradient embeddings (selection.strategy: badge reads them; score the round "
                         "with that strategy set: `medal round`, or `medal score` with selection.strategy: badge)")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"gradient embedding weighting {weighting!r} is not one of {list(WEIGHTINGS)}")
    key = _key((weighting, axis))
    try:
        with np.load(path) as z:
            older = key not in z.files and _key(("none", axis)) in z.files
            arr = None if older else np.asarray(z[key], dtype=np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable gradient embeddings ({type(exc).__name__}: {exc})") from None
    if arr is None:
        raise ValueError(f"{path}: no {weighting!r}-weighted gradient embeddings (the file predates "
                         "selection.badge_weighting; delete it and score the round again)")
    if arr.ndim != 3 or not np.isfinite(arr).all():
        raise ValueError(f"{path}: gradient embeddings of axis {axis} must be a finite (n_slices, C, H + 1) array, "
                         f"got shape {arr.shape}")
    return arr


def ensure_gradient_embeddings(checkpoint, cases, out_dir, *, ucfg, data_cfg, model_cfg=None, device="cpu",
                               cache=None) -> dict[str, str]:
    """Write the gradient embeddings of every case in ``cases`` that has score volumes under ``out_dir/scores``
    but no embedding file yet (or one without every weighting's arrays), with the network of ``checkpoint`` (the
    one that scored them). Returns ``{case_id: error}`` for cases that failed (the others go on)."""
    from medal.data import load_volume
    from medal.data.channels import network_input
    from medal.data.resample import checkpoint_orientation, checkpoint_spacing, network_grid
    from medal.uncertainty.score import scorer_nets

    todo = [c for c in cases if (Path(out_dir) / "scores" / c.case_id / "prediction.nii.gz").is_file()
            and not has_gradient_embeddings(embedding_path(out_dir, c.case_id))]
    if not todo:
        return {}
    nets, temperature, payload = scorer_nets(checkpoint, ucfg, expected=model_cfg, device=device)
    spacing = checkpoint_spacing(payload)  # the network's grid: the checkpoint's, never the config's
    orientation = checkpoint_orientation(payload)
    from medal.data.intensity import checkpoint_intensity

    intensity = checkpoint_intensity(payload)
    failures = {}
    for case in todo:
        try:
            image = cache.volume(case.image) if cache is not None else load_volume(case.image)
            x = network_input(image, data_cfg, path=case.image, cache=cache, intensity=intensity)
            write_case_embeddings(nets, x, out_dir, case.case_id, ucfg=ucfg, device=device, temperature=temperature,
                                  grid=network_grid(image.shape, image.affine, spacing, orientation))
        except (ValueError, RuntimeError, OSError) as exc:
            failures[case.case_id] = f"{type(exc).__name__}: {exc}"
    return failures

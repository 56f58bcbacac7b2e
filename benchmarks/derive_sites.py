"""A multi-site pool built from the real hippocampus cases: a majority site and two minority "scanners".

    python benchmarks/derive_sites.py OUT [--shares 0.6 0.25 0.15] [--site-c thick|inverted] [--data ...]

The Decathlon hippocampus cases come from one site and one protocol; a radiology group's pool rarely does.
This writes a copy of the dataset in which every case is assigned to a site (by the rank of a hash of its
id, so the shares hold exactly over the 220 cases and every run derives the same sites), and the images of
the minority sites are altered the way acquisitions differ (labels unchanged):

- site A (``shares[0]``): the original images.
- site B (``shares[1]``), "low field, noisy": a gamma of 1.8 (on the 0.5-99.5 percentile range), a linear bias
  field of +-35% along a direction drawn per case, and Rician noise with a sigma of 8% of the range (the
  magnitude of complex Gaussian noise, as in MR magnitude images; Gudbjartsson & Patz, "The Rician
  distribution of noisy MRI data", MRM 1995).
- site C (``shares[2]``, the rarest), "thick slices, other contrast": a gamma of 0.5, a +-35% bias field, and
  slices three voxels thick across the axial plane (a box average along the last array axis: partial volume).

- ``--site-c inverted``: site C is instead "the other weighting": the intensities inverted on the 0.5-99.5
  percentile range (dark tissue bright, as a T2-weighted image shows what a T1-weighted one shows dark) and the
  same +-35% bias field, no blur and no gamma. Nothing of the image is lost (the inversion is one-to-one inside
  the range), so a model can learn the site from its labels: the thick-slice site's Dice was limited by the
  images (~0.77-0.80 whatever the labels, RESULTS.md 2026-12-05), this one's should not be.

The rarest site gets the alteration a model trained on the original images handles worst: such a model
(1,500 s of labels, an earlier screen's) reached foreground Dice 0.68 on the thick-slice images against 0.88
on the same cases' originals, and 0.83 against 0.88 on the noisy ones (20 validation cases).

Why: on the one-site task a model reaches 95% of its all-labels Dice after ~3% of the pool's cost and
fg_random ties every selection medal has, the oracle included (RESULTS.md, issue 11): random foreground
slices already find what the model lacks. A minority site the model has seen little of is the case where
that is expected to fail and uncertainty to find the cases worth labelling (domain imbalance; e.g. nnActive's
multi-site datasets). The alterations are synthetic, the anatomy and its labels real: a benchmark layout,
never a claim about a real scanner.

Images are written as float32 NIfTI with the source header, labels copied unchanged; LICENSE and README (with
this derivation stated) are copied, as CC-BY-SA 4.0 requires; ``sites.json`` maps every case id to its site.
Last line: the number of cases per site.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from _derived import write_derived
from scipy.ndimage import uniform_filter1d

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "hippocampus"
SITES = "ABC"


def case_id(path: str) -> str:
    return Path(path).name.split(".")[0]


def assign_sites(ids: list[str], shares) -> dict[str, str]:
    """Site per case: cases ranked by a CRC32 of their id, cut at the cumulative shares."""
    shares = np.asarray(shares, float)
    if len(shares) != len(SITES) or (shares < 0).any() or not np.isclose(shares.sum(), 1.0):
        raise ValueError(f"--shares: {len(SITES)} non-negative shares summing to 1, got {list(shares)}")
    order = sorted(ids, key=lambda c: (zlib.crc32(c.encode()), c))
    bounds = np.round(np.cumsum(shares) * len(ids)).astype(int)
    return {c: SITES[int(np.searchsorted(bounds, i, side="right"))] for i, c in enumerate(order)}


def _bias(shape, rng, amplitude: float) -> np.ndarray:
    """A linear multiplicative field, 1 - amplitude .. 1 + amplitude across the volume along a random direction."""
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    ramp = sum(g * c for g, c in zip(grid, d))
    return 1.0 + amplitude * ramp / max(float(np.abs(ramp).max()), 1e-6)


def alter(image: np.ndarray, site: str, seed: int, site_c: str = "thick") -> np.ndarray:
    """The site's acquisition applied to one image (site A: unchanged; ``site_c``: thick or inverted)."""
    x = np.asarray(image, np.float32)
    if site == "A":
        return x
    rng = np.random.default_rng(seed)
    lo, hi = np.percentile(x, [0.5, 99.5])
    u = np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    if site == "B":
        u = u ** 1.8 * _bias(u.shape, rng, 0.35)
        n1, n2 = rng.normal(0, 0.08, u.shape), rng.normal(0, 0.08, u.shape)
        u = np.sqrt((u + n1) ** 2 + n2 ** 2)
    elif site == "C" and site_c == "inverted":
        u = (1.0 - u) * _bias(u.shape, rng, 0.35)
    elif site == "C":
        u = uniform_filter1d(u ** 0.5, size=3, axis=2, mode="nearest") * _bias(u.shape, rng, 0.35)
    else:
        raise ValueError(f"unknown site {site!r}")
    return (lo + u * (hi - lo)).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--shares", type=float, nargs=3, default=[0.6, 0.25, 0.15], metavar=("A", "B", "C"))
    ap.add_argument("--site-c", choices=("thick", "inverted"), default="thick",
                    help="site C's alteration: thick slices and gamma 0.5 (default) or inverted intensities")
    args = ap.parse_args(argv)
    src, out = Path(args.data), Path(args.out)
    meta = json.loads((src / "dataset.json").read_text())
    try:
        sites = assign_sites([case_id(item["image"]) for item in meta["training"]], args.shares)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    for item in meta["training"]:
        cid = case_id(item["image"])
        nii = nib.load(src / item["image"])
        hdr = nii.header.copy()
        hdr.set_data_dtype(np.float32)
        img = alter(np.asarray(nii.dataobj), sites[cid], zlib.crc32(cid.encode()), args.site_c)
        nib.save(nib.Nifti1Image(img, nii.affine, hdr), out / item["image"])
        shutil.copyfile(src / item["label"], out / item["label"])
    how = (f"each case assigned to site A/B/C (shares {args.shares[0]:g}/{args.shares[1]:g}/{args.shares[2]:g}, by a "
           f"hash of its id; sites.json); site B images: gamma 1.8, +-35% bias field, Rician noise 8%; site C: "
           + ("intensities inverted on the 0.5-99.5 percentile range, +-35% bias field" if args.site_c == "inverted"
              else "gamma 0.5, +-35% bias field, 3-voxel slices"))
    (out / "sites.json").write_text(json.dumps(sites, indent=1, sort_keys=True))
    write_derived(src, out, meta, name="Hippocampus, three sites (derived)", how=how, script="derive_sites.py",
                  remark="Labels are the originals; the image alterations are synthetic: a benchmark layout, "
                         "not a real scanner.")
    counts = {s: sum(v == s for v in sites.values()) for s in SITES}
    print(f"{len(sites)} cases written to {out}; cases per site: "
          + ", ".join(f"{s} {n}" for s, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

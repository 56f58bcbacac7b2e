"""Rebuild medal's bundled sample (medal/sample_data/hippocampus) from ../shared/data/hippocampus.

    python scripts/make_sample.py [--n 20]

Copies the first N cases by id (byte-identical), the LICENSE, writes dataset.json with those cases
and SHA256SUMS. The attribution README.md in the sample folder is kept as it is.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO.parent / "shared" / "data" / "hippocampus"
DST = REPO / "medal" / "sample_data" / "hippocampus"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="number of cases (the project may ship at most 20)")
    args = ap.parse_args(argv)
    if not 1 <= args.n <= 20:
        raise SystemExit("--n must lie in 1..20: the project may bundle at most 20 cases")
    names = sorted(p.name for p in (SRC / "imagesTr").glob("*.nii.gz"))[: args.n]
    for sub in ("imagesTr", "labelsTr"):
        (DST / sub).mkdir(parents=True, exist_ok=True)
        for old in (DST / sub).glob("*.nii.gz"):
            if old.name not in names:
                old.unlink()
        for n in names:
            shutil.copyfile(SRC / sub / n, DST / sub / n)
    shutil.copyfile(SRC / "LICENSE", DST / "LICENSE")
    meta = json.loads((SRC / "dataset.json").read_text())
    meta["description"] = meta["description"].split(" -- ")[0] + f" -- medal's bundled sample: {len(names)} cases"
    meta["training"] = [{"image": f"./imagesTr/{n}", "label": f"./labelsTr/{n}"} for n in names]
    meta["numTraining"] = len(names)
    (DST / "dataset.json").write_text(json.dumps(meta, indent=1))
    sums = [f"{hashlib.sha256((DST / sub / n).read_bytes()).hexdigest()}  {sub}/{n}"
            for sub in ("imagesTr", "labelsTr") for n in names]
    (DST / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    print(f"{len(names)} cases -> {DST}")


if __name__ == "__main__":
    main()

"""What every dataset derived from the real cases writes besides its volumes (derive_tail.py, derive_sites.py).

The Decathlon data are CC-BY-SA 4.0: a derived copy keeps the LICENSE and the README and says how it was derived.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def write_derived(src: Path, out: Path, meta: dict, *, name: str, how: str, script: str, remark: str) -> None:
    """``dataset.json`` (``name``, ``how`` added to the description), LICENSE and README copied, the README
    told ``how`` the copy was derived by ``benchmarks/script`` and ``remark`` (what is real, what is not)."""
    meta["name"] = name
    meta["description"] = f"{meta.get('description', '')}; {how} (benchmarks/{script})"
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))
    for fname in ("LICENSE", "README.md"):
        if (src / fname).exists():
            shutil.copy(src / fname, out / fname)
    with open(out / "README.md", "a") as f:
        f.write(f"\nDerived by medal's benchmarks/{script}: {how}. {remark}\n")

"""Scoring a dataset on an executor: resumable, failure-isolated, with progress and a failures report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from medal.data import atomic_write_json

from .work import ScoreSpec, sweep_temp_files

__all__ = ["BatchReport", "score_dataset"]


@dataclass
class BatchReport:
    results: dict[str, dict] = field(default_factory=dict)  # case_id -> last result record
    failures: dict[str, dict] = field(default_factory=dict)  # case_id -> {"error", "attempts"}
    seconds: float = 0.0
    swept: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.results.values())

    def summary(self) -> str:
        vox = sum(r.get("voxels", 0) for r in self.results.values())
        rate = self.count("scored") / self.seconds if self.seconds else 0.0
        lines = [f"{self.count('scored')} scored, {self.count('cached')} already up to date, "
                 f"{len(self.failures)} failed in {self.seconds:.1f} s "
                 f"({rate:.2f} volumes/s, {vox / max(self.seconds, 1e-9) / 1e6:.2f} Mvoxels/s)"]
        if self.swept:
            lines.append(f"removed {self.swept} temporary file(s) left by an interrupted run")
        for cid, f in self.failures.items():
            lines.append(f"FAILED [{cid}] after {f['attempts']} attempt(s): {f['error']}")
        return "\n".join(lines)


def score_dataset(spec: ScoreSpec, cases, executor, *, retries: int = 1, progress: bool = True,
                  folder: str = "scores") -> BatchReport:
    """Run ``spec``'s per-case work on ``cases`` (``medal.data.Case`` objects) with ``executor``
    (scoring for a ScoreSpec, region tables for a RegionSpec with ``folder="regions"``). Failed cases
    are retried up to ``retries`` times, then recorded in ``OUT/<folder>/failures.json``. Never
    raises for a bad case."""
    from tqdm import tqdm

    out = Path(spec.out_dir)
    report = BatchReport(swept=sweep_temp_files(out / folder))
    todo = [(c.case_id, str(c.image)) for c in cases]
    attempts: dict[str, int] = {}
    t0 = time.perf_counter()
    voxels = 0
    with tqdm(total=len(todo), desc=f"{folder} ({executor.name})", unit="vol", disable=not progress) as bar:
        while todo:
            again = []
            for res in executor.run(spec, todo):
                cid = res["case_id"]
                attempts[cid] = attempts.get(cid, 0) + 1
                if res["status"] == "failed" and attempts[cid] <= retries:
                    again.append(next(c for c in todo if c[0] == cid))
                    continue
                report.results[cid] = res
                if res["status"] == "failed":
                    report.failures[cid] = {"error": res["error"], "attempts": attempts[cid]}
                voxels += res.get("voxels", 0)
                elapsed = time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix({"vol/s": f"{bar.n / elapsed:.2f}", "Mvox/s": f"{voxels / elapsed / 1e6:.2f}"})
            todo = again
    report.seconds = time.perf_counter() - t0
    atomic_write_json(out / folder / "failures.json", report.failures)
    return report

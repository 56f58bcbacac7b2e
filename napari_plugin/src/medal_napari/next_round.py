"""Close a round from the GUI: ingest its finished annotations, then make the next round.

The dataset and the run folder come from the round's ``manifest.json`` (written by ``medal round``;
the run folder is the round's parent), the config from the same manifest. The slow part (training,
scoring, selecting) runs in a worker thread and reports its steps, so napari stays responsive.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["RoundPlan", "plan_next_round", "make_next_round"]


class RoundPlan:
    def __init__(self, round_dir: Path, run_dir: Path, index: int, dataset_root: Path, config: dict):
        self.round_dir, self.run_dir, self.index = round_dir, run_dir, index
        self.dataset_root, self.config = dataset_root, config

    @property
    def next_dir(self) -> Path:
        return self.run_dir / f"round_{self.index + 1:03d}"


def plan_next_round(round_dir) -> RoundPlan:
    """What finishing ``round_dir`` will do; ``ValueError`` (a message for the user) when it cannot."""
    round_dir = Path(round_dir)
    path = round_dir / "manifest.json"
    try:
        man = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ValueError(f"{path}: not found or unreadable: this round was not made by `medal round`; "
                         "ingest its annotations from the terminal (medal ingest)") from None
    root = Path(man.get("dataset_root", ""))
    if not root.is_dir():
        raise ValueError(f"{path}: its dataset {root} is not a folder here")
    return RoundPlan(round_dir, round_dir.parent, int(man["round"]), root, man.get("config", {}))


def make_next_round(plan: RoundPlan):
    """Ingest, report, then train / score / select round N+1; yields ``(step, total, what)`` as it goes
    and finally the new round's folder."""
    from medal.config import config_from_dict
    from medal.data import load_dataset
    from medal.loop import ingest, run_round
    from medal.report import write_run_report

    cfg = config_from_dict({k: v for k, v in plan.config.items() if k != "simulation"},
                           source=str(plan.round_dir / "manifest.json"))
    ds = load_dataset(plan.dataset_root)
    yield (0, 4, f"ingesting {plan.round_dir.name}")
    rep = ingest(plan.run_dir, plan.round_dir, ds)
    try:
        write_run_report(plan.run_dir, ds, cfg)
    except Exception:  # noqa: BLE001 - the report is a by-product; the round goes on
        pass
    for n, (step, what) in enumerate((("train", "training the model"), ("score", "scoring the pool"),
                                      ("select", "choosing the next tasks")), start=1):
        yield (n, 4, f"{what} ({rep.voxels_added} new annotated voxels)" if n == 1 else what)
        run_round(plan.run_dir, ds, cfg, index=plan.index + 1, stop_after=step if step != "select" else None)
    try:
        write_run_report(plan.run_dir, ds, cfg)
    except Exception:  # noqa: BLE001
        pass
    yield (4, 4, "done")
    return plan.next_dir

"""Appending a benchmark's figures to benchmarks/RESULTS.md with the command, machine and date."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    import torch

    from medal.simulation.simulate import run_environment

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    env = run_environment()  # the CPU's model name and the numeric libraries: a seed's numbers hold per install
    return (f"{os.cpu_count()} CPU cores ({env['cpu']}), torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, numpy {env['numpy']}, MONAI {env['monai']}, {gpu}, Python {platform.python_version()}")


def record(title: str, lines: list[str], *, path: Path = RESULTS) -> None:
    """Append one dated entry; ``lines`` are markdown lines (tables, bullet points)."""
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    entry = [f"\n## {title}\n", f"- command: `{cmd}`", f"- machine: {machine()}", f"- date: {stamp}", ""] + lines
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n".join(entry) + "\n")

import os
import subprocess
import sys

import numpy as np
import pytest

from medal.data import Volume, atomic_path, atomic_write_json, atomic_write_text, load_volume, save_volume


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


def test_failure_midway_leaves_old_file_intact(tmp_path):
    target = tmp_path / "labels.json"
    atomic_write_text(target, "old content\n")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as fh:
                fh.write("new content, half wr")
                fh.flush()
                raise RuntimeError("disk on fire")
    assert target.read_text() == "old content\n"
    assert _leftovers(tmp_path) == []


def test_failed_volume_write_keeps_previous_labels(tmp_path):
    target = tmp_path / "case.nii.gz"
    save_volume(Volume(np.full((4, 4, 4), 7, np.uint8), np.eye(4)), target)
    with pytest.raises(Exception):
        # object arrays cannot be serialised: nibabel fails after the temporary file is opened
        save_volume(Volume(np.empty((4, 4, 4), dtype=object), np.eye(4)), target)
    assert np.all(load_volume(target).array == 7)
    assert _leftovers(tmp_path) == []


def test_killed_writer_never_leaves_a_truncated_target(tmp_path):
    """A process SIGKILLed while writing a large file leaves the old target whole."""
    target = tmp_path / "big.bin"
    target.write_bytes(b"A" * 1000)
    code = (
        "import sys, os\n"
        "from medal.data.atomic import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    with open(tmp, 'wb') as fh:\n"
        "        fh.write(b'B' * 1_000_000); fh.flush(); os.fsync(fh.fileno())\n"
        "        print('writing', flush=True)\n"
        "        import time; time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait()
    assert target.read_bytes() == b"A" * 1000


def test_json_write_and_no_overwrite(tmp_path):
    p = atomic_write_json(tmp_path / "m.json", {"a": 1})
    assert p.read_text().startswith("{")
    with pytest.raises(FileExistsError):
        atomic_write_json(p, {"a": 2}, overwrite=False)
    assert '"a": 1' in p.read_text()
    assert sorted(os.listdir(tmp_path)) == ["m.json"]

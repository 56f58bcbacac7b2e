"""Uncompressed display copies of a round's images (medal.tasks.display), on real sample cases."""

import json
import mmap
import os
import shutil

import numpy as np

from medal.data import load_volume, sample_dataset
from medal.tasks import Task, TaskList
from medal.tasks.display import display_window, open_display_image, write_display_cache

CASES = ("hippocampus_004", "hippocampus_006")


def is_mapped(a) -> bool:
    """Whether ``a``'s memory is a file mapping (nothing read until a plane is touched)."""
    while a is not None:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = getattr(a, "base", None)
    return False


def _round(tmp_path, cases=CASES):
    """A copy of two real sample images (their stamps change only when the test says so) and tasks."""
    root = tmp_path / "dataset" / "imagesTr"
    root.mkdir(parents=True)
    tasks = []
    for n, case in enumerate(cases):
        src = sample_dataset() / "imagesTr" / f"{case}.nii.gz"
        shutil.copy2(src, root / src.name)
        tasks.append(Task(task_id=f"t{n:04d}", case_id=case, image=f"imagesTr/{case}.nii.gz", kind="slice",
                          axis=2, index=3, supervoxel=-1, bbox=[[0, 0, 3], [1, 1, 4]], score=1.0,
                          predicted_cost_s=10.0, strategy="knapsack"))
    rd = tmp_path / "round"
    rd.mkdir()
    return TaskList(rd / "tasks.json", tmp_path / "dataset", tasks), rd


def test_copies_are_memory_mapped_and_equal_to_their_source(tmp_path):
    tl, rd = _round(tmp_path)
    assert write_display_cache(tl, rd, min_voxels=0) == {}
    for task in tl.tasks:
        src = load_volume(tl.image_path(task))
        got = open_display_image(rd, task.case_id, tl.image_path(task))
        assert got is not None
        vol, window = got
        assert is_mapped(vol.array) and not is_mapped(src.array)  # nothing read until a plane is shown
        np.testing.assert_array_equal(vol.array, src.array)
        assert vol.array.dtype == src.array.dtype
        np.testing.assert_allclose(vol.affine, src.affine)
        assert window == display_window(src.array)
        assert window[0] < window[1]
    index = json.loads((rd / "display" / "index.json").read_text())
    assert sorted(index["cases"]) == sorted(CASES)


def test_small_images_are_not_copied(tmp_path):
    tl, rd = _round(tmp_path)
    assert write_display_cache(tl, rd) == {}  # the sample's ~60k-voxel crops are far below MIN_VOXELS
    assert not (rd / "display").exists()
    assert open_display_image(rd, CASES[0], tl.image_path(tl.tasks[0])) is None


def test_a_changed_source_or_a_broken_copy_falls_back_to_the_source(tmp_path):
    tl, rd = _round(tmp_path)
    write_display_cache(tl, rd, min_voxels=0)
    src0, src1 = tl.image_path(tl.tasks[0]), tl.image_path(tl.tasks[1])
    st = os.stat(src0)
    os.utime(src0, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the image was replaced since the round
    assert open_display_image(rd, CASES[0], src0) is None
    copy = rd / "display" / f"{CASES[1]}.nii"
    copy.write_bytes(copy.read_bytes()[:1000])  # a truncated copy
    assert open_display_image(rd, CASES[1], src1) is None
    # writing again refreshes exactly what is stale, and both are served again
    before = (rd / "display" / f"{CASES[0]}.nii").stat().st_mtime_ns
    assert write_display_cache(tl, rd, min_voxels=0) == {}
    assert open_display_image(rd, CASES[0], src0) is not None and open_display_image(rd, CASES[1], src1) is not None
    assert (rd / "display" / f"{CASES[0]}.nii").stat().st_mtime_ns >= before


def test_case_ids_never_name_files_outside_the_folder(tmp_path):
    tl, rd = _round(tmp_path, cases=("hippocampus_004",))
    tl.tasks[0].case_id = "../escape"
    problems = write_display_cache(tl, rd, min_voxels=0)
    assert "not a plain file name" in problems["../escape"]
    assert not (rd / "escape.nii").exists() and not (tmp_path / "escape.nii").exists()
    assert open_display_image(rd, "../escape", tl.image_path(tl.tasks[0])) is None

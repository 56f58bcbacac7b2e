"""Fixtures for the napari plugin tests: real napari, real Qt (PyQt6) under Xvfb (pytest-xvfb)."""

import os

import numpy as np
import pytest

if not os.environ.get("MEDAL_REQUIRE_GUI"):
    pytest.importorskip("medal_napari", reason="the napari plugin is not installed (pip install -e napari_plugin)")


@pytest.fixture(autouse=True, scope="session")
def x_display():
    """pytest-xvfb has started Xvfb and set DISPLAY by now; without one Qt would abort the whole run."""
    if not os.environ.get("DISPLAY"):
        if os.environ.get("MEDAL_REQUIRE_GUI"):
            pytest.fail("no X display for the napari tests: install Xvfb (`make gui-deps`)")
        pytest.skip("no X display: install Xvfb (`make gui-deps`) to run the napari tests")


@pytest.fixture
def round_dir(tmp_path):
    """A copy of the plugin's real sample round (hippocampus_004: slice and supervoxel tasks)."""
    from medal_napari._sample_data import prepare_sample_round

    return prepare_sample_round(tmp_path / "round")


@pytest.fixture
def open_widget(make_napari_viewer, qtbot):
    """``open_widget(round, **kw)`` -> (viewer, widget) with the round open, in a shown viewer."""
    from medal_napari.widget import AnnotationWidget

    def make(path, *, show=True, **kw):
        viewer = make_napari_viewer(show=show)
        kw.setdefault("autosave_s", 0)
        widget = AnnotationWidget(viewer, **kw)
        viewer.window.add_dock_widget(widget, name="medal tasks", area="right")
        assert widget.open_round(path), widget.message_label.text()
        return viewer, widget

    yield make


def plane_index(task, shape):
    """Index tuple of the task's slice plane."""
    return tuple(task.index if d == task.axis else slice(None) for d in range(3))


def paint_at(layer, coord, label, qtbot):
    """Paint one brush dab through the Labels layer API and let the plugin check it."""
    layer.brush_size = 3
    layer.paint(np.asarray(coord, dtype=float), label)
    qtbot.wait(20)


@pytest.fixture(autouse=True)
def _private_preferences(tmp_path, monkeypatch):
    """Answers remembered per annotator go to a folder of this test's own."""
    monkeypatch.setenv("MEDAL_CONFIG_DIR", str(tmp_path / "medal-config"))

"""napari-medal: annotate the tasks medal selected, in napari.

>>> from medal_napari import annotate
>>> viewer, widget = annotate("runs/my_run/round_001")   # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["annotate"]


def annotate(round_dir, viewer=None, *, autosave_s: float = 30.0, idle_s: float = 60.0, user: str | None = None,
             start_from_prediction: bool | None = None):
    """Open ``round_dir`` (a round folder or its ``tasks.json``) for annotation in ``viewer``.

    ``start_from_prediction``: new tasks start from the model's prediction, to correct it; ``None``
    (default): as the round was priced (on where its ``tasks.json`` says ``costs.annotation: correct``).

    Creates a viewer when none is given; docks the medal task widget and opens the first unfinished
    task. Returns ``(viewer, widget)``; ``widget.session`` is the :class:`~medal_napari.session.AnnotationSession`.
    """
    import napari

    from .widget import AnnotationWidget

    if viewer is None:
        viewer = napari.Viewer(title="medal annotation")
    widget = AnnotationWidget(viewer, autosave_s=autosave_s, idle_s=idle_s, user=user,
                              start_from_prediction=start_from_prediction)
    viewer.window.add_dock_widget(widget, name="medal tasks", area="right")
    widget.open_round(round_dir)
    return viewer, widget

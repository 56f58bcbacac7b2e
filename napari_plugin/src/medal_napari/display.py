"""What the viewer shows for a case and a task: layers (reused by name), the outline, the camera."""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from medal.tasks import Task

__all__ = ["LAYERS", "set_layer", "label_colormap", "show_case", "show_region", "move_to", "text_overlay",
           "overlay_text", "draw_pending", "hold_drawing", "orient"]

#: layers whose data was replaced with their redraw held back (``set_layer(..., defer=True)``), drawn
#: once by :func:`draw_pending`. A case switch replaces four volumes and then moves to the task's plane:
#: without this every layer was sliced, uploaded to the GPU and its extent recomputed twice (once for
#: the old plane, once for the new one). One GUI thread, so a plain list.
_PENDING: list = []

LAYERS = {"image": "image", "uncertainty": "uncertainty", "prediction": "prediction", "labels": "labels",
          "region": "task region"}


@functools.cache
def task_labels_class():
    """``Labels`` that call ``on_history`` after an undo or redo: napari emits no paint event for those,
    and a redo can bring back a stroke the plugin undid for lying off the task. One class per process:
    a class made anew per call failed ``set_layer``'s type check, so every case switch removed and
    re-added the labels layer (napari runs ``gc.collect`` per removal: ~1 s per switch on 512x512x300)."""
    from napari.layers import Labels

    class TaskLabels(Labels):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.on_history: list = []

        def undo(self) -> None:
            super().undo()
            for cb in list(self.on_history):
                cb()

        def redo(self) -> None:
            super().redo()
            for cb in list(self.on_history):
                cb()

    return TaskLabels


#: window/level presets: name -> (level, window); None = the case's own 0.5-99.5 percentile window
WINDOWS = {"auto (this case)": None, "CT brain": (40.0, 80.0), "CT soft tissue": (50.0, 400.0),
           "CT bone": (400.0, 1800.0), "CT lung": (-600.0, 1500.0)}


def window_limits(name: str, auto: tuple[float, float]) -> tuple[float, float]:
    """Contrast limits of a window/level preset (``auto``: the case's percentile window)."""
    preset = WINDOWS[name]
    if preset is None:
        return auto
    level, width = preset
    return (level - width / 2, level + width / 2)


def drag_window(limits: tuple[float, float], dx: float, dy: float, span: float) -> tuple[float, float]:
    """Window/level by dragging, as radiology viewers do: right widens the window, down raises the
    level; ``dx``, ``dy`` in pixels, ``span`` the intensity range one canvas width moves."""
    lo, hi = limits
    level, width = (lo + hi) / 2, hi - lo
    width = max(width * float(np.exp(dx / 200.0)), span * 1e-4)
    level = level + dy / 200.0 * span
    return (level - width / 2, level + width / 2)


def brush_size_for(spacing, mm: float = 3.0) -> int:
    """A brush about ``mm`` across in the painting plane, whatever the voxel size."""
    finest = float(min(spacing)) if len(spacing) else 1.0
    return int(max(1, round(mm / max(finest, 1e-6))))


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9 on, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


@contextlib.contextmanager
def hold_drawing(viewer):
    """No canvas draw inside the block, then one draw (at the next event-loop turn) after it.

    Opening a task adds or replaces layers, moves the dims, and may show the dims slider or widen the
    dock; each canvas resize makes Qt's ``QOpenGLWidget`` paint at once, synchronously, so the first
    task of a round was drawn five times before it was shown (profiled: about 2 s of a 512x512 case's
    first open on software GL). Nested blocks draw once, after the outermost. Without napari's private
    canvas attributes (another napari version) it holds nothing back.
    """
    try:
        scene_canvas = viewer.window._qt_viewer.canvas._scene_canvas
        draw = scene_canvas.events.draw
    except Exception:  # noqa: BLE001 - private napari API: only a speed-up
        yield
        return
    draw.block()
    try:
        yield
    finally:
        draw.unblock()
        if not draw.blocked():
            try:
                scene_canvas.update()
            except Exception:  # noqa: BLE001 - the canvas may be closing
                pass


#: the layer name of a case's further input channel k (``_000k`` file): hidden under the image until switched on
CHANNEL_LAYER = "channel {}"


def get_layer(viewer, key: str):
    name = LAYERS.get(key, key)
    return viewer.layers[name] if name in viewer.layers else None


def _replace_data(layer, data, defer: bool) -> None:
    block = getattr(layer, "_block_refresh", None)  # napari >= 0.5; without it, redraw at once
    if not defer or block is None or not hasattr(layer, "_slice_input"):
        layer.data = data
        return
    with block():
        layer.data = data
    _PENDING.append(layer)


def draw_pending(viewer, before: dict | None = None) -> int:
    """Slice and draw, once each, the layers whose data :func:`set_layer` replaced with ``defer=True``.

    ``before`` maps ``id(layer)`` to the layer's slice input before a dims change (:func:`move_to`):
    a layer that change re-sliced already shows its new data and is skipped. Returns layers refreshed.
    """
    done, n = set(), 0
    for layer in _PENDING:
        if id(layer) in done:
            continue
        done.add(id(layer))
        if layer not in viewer.layers:
            continue
        if before is not None and id(layer) in before and layer._slice_input is not before[id(layer)]:
            continue  # re-sliced by the dims change, with the new data
        layer.refresh()
        n += 1
    _PENDING.clear()
    return n


def _no_paint_overlays(layer) -> None:
    """Hide a labels layer's painting overlays (the polygon and the brush outline) before it is added:
    napari builds their vispy visuals only for visible overlays, about 0.1 s per layer on a 2-core
    machine, wasted on a layer nobody paints. ``enabled`` (which paint mode uses them) is untouched."""
    overlays = getattr(layer, "_overlays", {})  # private napari API (0.5-0.9): only a speed-up
    for name in ("polygon", "brush_stroke"):
        if name in overlays and hasattr(overlays[name], "visible"):
            overlays[name].visible = False


def set_layer(viewer, key: str, kind, data, *, defer: bool = False, paintable: bool = True, **props):
    """Update the layer called ``LAYERS[key]`` (or add it); returns ``(layer, added)``.

    ``defer``: hold back the redraw of replaced data until :func:`draw_pending` (or a :func:`move_to`).
    ``paintable=False``: a labels layer only shown, never painted (built without painting overlays).
    """
    layer = get_layer(viewer, key)
    if layer is not None and not isinstance(layer, kind):
        viewer.layers.remove(layer)
        layer = None
    if layer is None:
        if kind.__name__ == "TaskLabels" or (kind.__name__ == "Labels" and not paintable):
            layer = kind(data, name=LAYERS.get(key, key), **props)
            if not paintable:
                _no_paint_overlays(layer)
            viewer.add_layer(layer)
            return layer, True
        add = {"Image": viewer.add_image, "Labels": viewer.add_labels}[kind.__name__]
        return add(data, name=LAYERS.get(key, key), **props), True
    # every assignment re-slices the layer: skip the ones that change nothing
    if layer.data is not data:
        current = layer.data
        if not (isinstance(current, np.ndarray) and current.shape == data.shape and current.size < 1_000_000
                and np.array_equal(current, data)):
            _replace_data(layer, data, defer)
    for k, v in props.items():
        if not np.array_equal(np.asarray(getattr(layer, k)), np.asarray(v)):
            setattr(layer, k, v)
    return layer, False


def label_colormap(label_colors: dict[int, str]):
    from napari.utils.colormaps import DirectLabelColormap

    colors = {0: "transparent", None: "#ff00ff"}  # magenta: a value that is not a class of the dataset
    colors.update(label_colors)
    return DirectLabelColormap(color_dict=colors)


def show_case(viewer, data, working: np.ndarray, label_colors: dict[int, str], on_paint, on_history=None, *,
              defer: bool = False):
    """Image, uncertainty heat map, prediction outline and the editable labels of one case.

    ``defer``: the caller moves to a plane next (:func:`move_to`), which draws the new volumes once.
    """
    from napari.layers import Image, Labels

    scale = tuple(data.image.spacing)
    # a new layer is given its window up front: without one napari scans three whole planes of the
    # (possibly memory-mapped) volume for its value range
    first = {"contrast_limits": data.contrast} if get_layer(viewer, "image") is None else {}
    img, _ = set_layer(viewer, "image", Image, data.image.array, scale=scale, defer=True, **first)
    if tuple(img.contrast_limits_range) != tuple(data.contrast):  # each change re-renders the thumbnail
        img.contrast_limits_range = data.contrast
    if tuple(img.contrast_limits) != tuple(data.contrast):
        img.contrast_limits = data.contrast
    # a multi-channel case's other channels (T2 beside ADC, say): hidden layers above the image, each with its
    # own window; switching one on shows it in place of the _0000 image
    shown = set()
    for name, array, contrast in getattr(data, "channels", ()):
        first = {"contrast_limits": contrast} if get_layer(viewer, name) is None else {}
        layer, new = set_layer(viewer, name, Image, array, scale=scale, defer=True, **first)
        if new:
            layer.visible = False
        elif tuple(layer.contrast_limits) != tuple(contrast):
            layer.contrast_limits_range = contrast
            layer.contrast_limits = contrast
        shown.add(name)
    for layer in [x for x in viewer.layers if x.name.startswith(CHANNEL_LAYER.format("")) and x.name not in shown]:
        viewer.layers.remove(layer)  # the previous case's, or not loaded yet for this one
    if data.uncertainty is not None:
        unc, new = set_layer(viewer, "uncertainty", Image, data.uncertainty, scale=scale, defer=True)
        unc.contrast_limits_range = data.uncertainty_limits
        unc.contrast_limits = data.uncertainty_limits
        if new:
            unc.colormap, unc.blending, unc.opacity = "inferno", "additive", 0.5
            unc.colorbar.visible = True  # what the colours mean, on the canvas
        unc.metadata["measure"] = data.uncertainty_name
    elif get_layer(viewer, "uncertainty") is not None:
        viewer.layers.remove(get_layer(viewer, "uncertainty"))
    if data.prediction is not None:
        pred, new = set_layer(viewer, "prediction", Labels, data.prediction, scale=scale, defer=True, paintable=False)
        if new:
            pred.contour, pred.opacity, pred.visible = 1, 0.7, False
            pred.colormap = label_colormap(label_colors)
    elif get_layer(viewer, "prediction") is not None:
        viewer.layers.remove(get_layer(viewer, "prediction"))
    lab, new = set_layer(viewer, "labels", task_labels_class(), working, scale=scale, defer=True)
    if new:
        lab.colormap = label_colormap(label_colors)
        lab.opacity = 0.6
    # the layer outlives a session (a next round opened in the same viewer): its callbacks are this one's
    prev = getattr(lab, "_medal_on_paint", None)
    if prev != on_paint:
        if prev is not None:
            lab.events.paint.disconnect(prev)
        lab.events.paint.connect(on_paint)
        lab._medal_on_paint = on_paint
        lab.on_history[:] = [on_history] if on_history is not None else []
    lab.selected_label = max(lab.selected_label, 1)
    if lab.metadata.get("case_id") != data.case_id:
        lab.brush_size = brush_size_for(data.image.spacing)
    lab.metadata["case_id"] = data.case_id
    order_layers(viewer)
    viewer.layers.selection.active = lab
    if not defer:
        draw_pending(viewer)
    return lab


def order_layers(viewer) -> None:
    """Image at the bottom, a multi-channel case's other channels above it, then the uncertainty heat map, the
    prediction, the labels being painted, the task outline and the edge letters on top, whatever order they were
    added in."""
    channels = sorted((x.name for x in viewer.layers if x.name.startswith(CHANNEL_LAYER.format(""))),
                      key=lambda n: int(n.split()[-1]) if n.split()[-1].isdigit() else 0)
    wanted = ([LAYERS["image"]] + channels + [LAYERS[k] for k in ("uncertainty", "prediction", "labels", "region")]
              + ["orientation"])
    present = [n for n in wanted if n in viewer.layers]
    for target, name in enumerate(present):
        current = viewer.layers.index(viewer.layers[name])
        if current != target:
            viewer.layers.move(current, target)


def show_region(viewer, task: Task, sl: tuple[slice, ...], region: np.ndarray, spacing, *,
                defer: bool = False) -> None:
    """The task region as a yellow outline (a small layer covering only the task's box); ``defer``: drawn
    by the :func:`move_to` that follows."""
    from napari.layers import Labels
    from napari.utils.colormaps import DirectLabelColormap

    scale = np.asarray(spacing, dtype=float)
    # one voxel of padding in-plane, so the outline of a region that touches the image border
    # (every slice task) is drawn too
    pad = [(0, 0) if d == task.axis else (1, 1) for d in range(3)]
    shown = np.pad(region.astype(np.uint8), pad)
    translate = tuple((float(s.start) - (0 if d == task.axis else 1)) * float(sc)
                      for d, (s, sc) in enumerate(zip(sl, scale)))
    layer, new = set_layer(viewer, "region", Labels, shown, scale=tuple(scale), translate=translate, defer=defer,
                           paintable=False)
    if new:
        layer.contour = 1
        layer.colormap = DirectLabelColormap(color_dict={0: "transparent", 1: "yellow", None: "yellow"})
        layer.opacity = 1.0
    layer.metadata["task_id"] = task.task_id
    lab = get_layer(viewer, "labels")
    if lab is not None:  # keep painting on the labels layer, above the outline
        viewer.layers.selection.active = lab
    if not defer:
        draw_pending(viewer)


_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}


def plane_name(codes: str, axis: int) -> str:
    """``axial`` / ``coronal`` / ``sagittal`` for the planes normal to array ``axis`` of a volume whose
    axes point towards ``codes`` (``Volume.orientation``, e.g. ``"RAS"``)."""
    return {"L": "sagittal", "R": "sagittal", "A": "coronal", "P": "coronal", "S": "axial", "I": "axial"}[codes[axis]]


def radiological_view(codes: str, axis: int):
    """How to show the planes normal to ``axis`` the way radiologists read them (3D Slicer's and
    ITK-SNAP's default): axial with the patient's left on screen right and anterior up, coronal with
    left on the right and superior up, sagittal with posterior on the right and superior up.

    Returns ``(dims order, (vertical, horizontal) camera orientation, edge letters)``: the array axis
    shown down the screen and the one across, which way each runs, and the letters for the
    ``top``, ``bottom``, ``left`` and ``right`` edges. Oblique volumes use the nearest axes.
    """
    name = plane_name(codes, axis)
    others = [d for d in range(3) if d != axis]
    across = "LR" if name in ("axial", "coronal") else "AP"
    h = next(d for d in others if codes[d] in across)
    v = next(d for d in others if d != h)
    right = "L" if across == "LR" else "P"
    up = "A" if name == "axial" else "S"
    horizontal = "right" if codes[h] == right else "left"
    vertical = "up" if codes[v] == up else "down"
    letters = {"right": right, "left": _OPPOSITE[right], "top": up, "bottom": _OPPOSITE[up]}
    return (axis, v, h), (vertical, horizontal), letters


def edge_letters(viewer, task: Task, codes: str, spacing, shape) -> None:
    """Patient directions (L/R/A/P/S/I) in the middle of each edge of the shown plane, as a text-only
    points layer: four points on every plane along the task's axis, so scrolling and jumping need no
    update; the layer changes only when the axis or the case's geometry does."""
    (axis, v, h), (vertical, horizontal), letters = radiological_view(codes, task.axis)
    key = [int(axis), str(codes), [float(x) for x in spacing], [int(x) for x in shape]]
    name = "orientation"
    if name in viewer.layers and viewer.layers[name].metadata.get("geometry") == key:
        return
    spacing = np.asarray(spacing, dtype=float)
    shape = np.asarray(shape, dtype=float)
    top_v = 0.0 if vertical == "down" else shape[v] - 1
    left_h = 0.0 if horizontal == "right" else shape[h] - 1
    inset_v, inset_h = max(1.0, 0.04 * shape[v]), max(1.0, 0.04 * shape[h])
    step_v = inset_v if top_v == 0 else -inset_v
    step_h = inset_h if left_h == 0 else -inset_h
    mid_v, mid_h = (shape[v] - 1) / 2, (shape[h] - 1) / 2
    where = {"top": (top_v + step_v, mid_h), "bottom": (shape[v] - 1 - top_v - step_v, mid_h),
             "left": (mid_v, left_h + step_h), "right": (mid_v, shape[h] - 1 - left_h - step_h)}
    planes = np.arange(int(shape[axis]), dtype=float)
    pts = np.zeros((len(planes), len(where), 3))
    pts[:, :, axis] = planes[:, None]
    for k, (pv, ph) in enumerate(where.values()):
        pts[:, k, v], pts[:, k, h] = pv, ph
    pts = pts.reshape(-1, 3)  # voxel coordinates, scaled like the volumes: a points layer in world units
    # had a 1.0 step and made napari's plane slider move in 1 mm steps instead of one plane
    text = [letters[side] for side in where] * len(planes)
    meta = {"letters": {side: letters[side] for side in where}, "geometry": key}
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.scale = tuple(spacing)
        layer.data = pts
        layer.text.string = text
        layer.metadata.update(meta)
    else:
        viewer.add_points(pts, name=name, size=0.01, scale=tuple(spacing), face_color="transparent",
                          border_color="transparent",
                          text={"string": text, "color": "cyan", "size": 14}, metadata=meta)
        lab = get_layer(viewer, "labels")
        if lab is not None:
            viewer.layers.selection.active = lab


def orient(viewer, axis: int, codes: str = "RAS") -> None:
    """2D view of the planes normal to ``axis``, shown the radiological way (:func:`radiological_view`),
    with the planes named on the sliders. Called before a case's layers are added too: napari slices a
    new layer at once, and a 512x512 plane across the storage order of a NIfTI volume (napari's default
    view slices the first axis) reads every page of it, so it is sliced along the task's axis from the
    start."""
    v = viewer
    if v.dims.ndisplay != 2:
        v.dims.ndisplay = 2
    if v.dims.ndim < 3:  # no layer yet
        v.dims.ndim = 3
    order, flips, _ = radiological_view(codes, axis)
    if tuple(v.dims.order) != order:
        v.dims.order = order
    cam = camera(v)
    if tuple(str(x) for x in cam.orientation2d) != flips:
        cam.orientation2d = flips
    labels = tuple(plane_name(codes, d) for d in range(3))
    if tuple(v.dims.axis_labels) != labels:
        v.dims.axis_labels = labels


def move_to(viewer, task: Task, plane: int, spacing, shape, *, reset: bool, codes: str = "RAS") -> None:
    """Slice along the task's axis at ``plane``, shown the radiological way (:func:`radiological_view`);
    zoom on a supervoxel's box. Draws the layers :func:`show_case` / :func:`show_region` left pending,
    once: those the plane change re-sliced are not sliced again."""
    v = viewer
    before = {id(layer): layer._slice_input for layer in _PENDING if hasattr(layer, "_slice_input")}
    axis = task.axis
    orient(v, axis, codes)
    cam = camera(v)
    spacing = np.asarray(spacing, dtype=float)
    v.dims.set_point(axis, plane * spacing[axis])
    if reset:
        v.reset_view()
    if task.kind == "supervoxel":
        lo, hi = np.asarray(task.bbox[0], float), np.asarray(task.bbox[1], float)
        shown = list(v.dims.order[-2:])
        centre = ((lo + hi) / 2 * spacing)[shown]
        extent = max(float(((hi - lo) * spacing)[shown].max()), 1e-6)
        full = max(float((np.asarray(shape) * spacing)[shown].max()), 1e-6)
        cam.center = tuple(centre)
        # the region at about a third of the view, never closer than 64 voxels across
        voxels = float(np.asarray(shape)[shown].max())
        cam.zoom = cam.zoom * float(max(min(full / (extent * 3.0), voxels / 64.0, 4.0), 1.0))
    draw_pending(v, before)


def text_overlay(viewer):
    canvas = getattr(viewer, "canvas", None)  # napari >= 0.9
    overlays = getattr(canvas, "overlays", None)
    if overlays is not None and "text" in overlays:
        return overlays["text"]
    return viewer.text_overlay


def overlay_text(task: Task, where: str, plane: int, shown: int, *, planes=None, visited=None,
                 position: tuple[int, int] | None = None) -> str:
    """The lines on the canvas: which task is open (and where in the queue), the plane shown, and a
    warning when the view is off the task. ``planes``: the planes a supervoxel spans; ``visited``:
    those the expert has looked at."""
    from .edits import plane_ranges

    head = f"task {position[0]} of {position[1]} · " if position else ""
    text = f"{head}{task.task_id} · {task.case_id} · {where} · {task.status}"
    if task.kind == "slice":
        if shown != plane:
            text += f"\nOFF THE TASK: you are on plane {shown}, the task is plane {plane}; edits here are not saved"
        return text
    planes = list(planes or [])
    if planes:
        seen = [p for p in planes if p in set(visited or [])]
        text += (f"\nplane {shown} · the supervoxel spans planes {plane_ranges(planes)} "
                 f"({len(seen)} of {len(planes)} looked at)")
        if shown not in planes:
            text += "\nOFF THE TASK: this plane holds none of the supervoxel"
    return text

"""Load what napari needs the first time it shows an image and labels, before the expert opens a round.

napari imports several libraries lazily, on its first image or labels layer: ``scipy.ndimage`` (the
layer thumbnail), ``pandas`` (layer features), ``pint``'s unit registry (layer transforms) and
``scipy.spatial.transform`` (the camera). On a 2-core workstation they take about 1.3 s, all inside
the first task's display. The first labels layer also imports ``skimage.color`` / ``skimage.exposure``
(colour and thumbnail helpers); medal reads NIfTI headers and images with ``nibabel`` (about 0.15 s
to import, inside the first open's task check). A layer's first construction does one-off work of
its own (0.3-0.5 s measured outside a viewer on a loaded 2-core machine; less where a viewer has already
imported ``napari.components``), so two tiny layers are built and dropped as well (never added to a
viewer). The task widget runs :func:`warm_up` on the GUI thread once the event loop is idle after
the dock opens (the expert is still choosing a round), so the first task is shown without
them. It changes no state and is done once per process; a failure only means the cost is paid later.
"""

from __future__ import annotations

import importlib

__all__ = ["GLYPHS", "MODULES", "warm_glyphs", "warm_up", "warm_visuals", "warmed_up"]

MODULES = ("scipy.ndimage", "pandas", "scipy.spatial.transform", "skimage.color", "skimage.exposure",
           "nibabel")  # the last one is medal's: the round's task check reads image headers with it
_done = False
_visuals_done = False
#: the characters of the task overlay and the L/R/A/P/S/I edge letters
GLYPHS = ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,:;/()[]%+-_=#<>'\"!?\u00b7\u2013\u2014")


def warmed_up() -> bool:
    return _done


def warm_up() -> None:
    """Import napari's lazily loaded dependencies and build its unit registry (once per process)."""
    global _done
    if _done:
        return
    _done = True
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional speed-up: napari imports it itself when needed
            pass
    try:
        from napari.utils._units import get_unit_registry

        get_unit_registry()
    except Exception:  # noqa: BLE001 - private napari API: may move between versions
        pass
    try:  # built and dropped: nothing is added to any viewer
        import numpy as np
        from napari.layers import Image, Labels

        Image(np.zeros((2, 4, 4), np.float32), contrast_limits=(0.0, 1.0))
        Labels(np.zeros((2, 4, 4), np.uint8))
    except Exception:  # noqa: BLE001 - an optional speed-up
        pass


def warm_glyphs(viewer, chars: str = GLYPHS) -> int:
    """Render the overlay's glyphs into ``viewer``'s canvas font atlas now; returns glyphs rendered.

    napari draws canvas text with signed-distance-field glyphs it renders on the CPU, one at a time,
    the first time each character is drawn (about 5-15 ms each on a 2-core machine, 0.3-0.5 s for the
    first task's overlay and edge letters). The atlas belongs to the viewer's canvas, so this runs per
    viewer, after :func:`warm_up`. Private napari API: any failure only means the cost is paid later.
    """
    try:
        info = viewer.window._qt_viewer.canvas._font_info
        font = info.font_manager.get_font(info.face, False, False)
    except Exception:  # noqa: BLE001 - an optional speed-up
        return 0
    n = 0
    for ch in chars:
        try:
            if ch not in font._glyphs:
                font[ch]
                n += 1
        except Exception:  # noqa: BLE001
            break
    return n


def warm_visuals(viewer) -> int:
    """Build and drop, once per process, what ``viewer`` makes for the first image, labels and points
    layer of each kind (vispy visuals, their painting overlays, the Qt layer controls), without adding
    any layer to it; returns the number of layer kinds built.

    Their first construction pays one-off costs (shader templates parsed, vispy's line dash atlas,
    Qt control classes) that the first task's display otherwise meets. Private napari API (0.9): any
    failure only means the cost is paid later.
    """
    global _visuals_done
    if _visuals_done:
        return 0
    _visuals_done = True
    n = 0
    try:
        import numpy as np
        from napari._qt.layer_controls.qt_layer_controls_container import create_qt_layer_controls
        from napari._vispy.utils.visual import create_vispy_layer, create_vispy_overlay
        from napari.layers import Image, Labels, Points

        font_info = viewer.window._qt_viewer.canvas.font_info()
        layers = (Image(np.zeros((2, 4, 4), np.float32), contrast_limits=(0.0, 1.0)),
                  Labels(np.zeros((2, 4, 4), np.uint8)),
                  Points(np.zeros((4, 3)), size=0.01, text={"string": list("LRAP")}))
    except Exception:  # noqa: BLE001 - an optional speed-up
        return 0
    for layer in layers:
        try:
            visual = create_vispy_layer(layer, font_info=font_info)
            for overlay in layer._overlays.values():
                if overlay.visible:
                    create_vispy_overlay(overlay, layer=layer, font_info=font_info, viewer=viewer,
                                         parent=None).close()
            controls = create_qt_layer_controls(layer)
            controls.close()
            controls.deleteLater()
            visual.close()
            n += 1
        except Exception:  # noqa: BLE001 - an optional speed-up
            break
    return n

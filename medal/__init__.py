"""medal: active learning for 3D medical image segmentation.

The package is laid out as the pipeline (see README):
``data`` -> ``model`` -> ``training`` -> ``uncertainty`` -> ``regions`` -> ``costs`` -> ``selection``
-> ``tasks``. Importing ``medal`` is cheap: torch is only imported by the stages that need it.
"""

__version__ = "0.1.0"

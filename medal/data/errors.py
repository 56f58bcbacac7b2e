"""The one error type the dataset layer raises."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset, case or volume on disk is unusable.

    The message always names the file and says what was expected and what arrived, e.g.
    ``labelsTr/hippocampus_004.nii.gz: shape (35, 51, 36) does not match image shape (35, 50, 36)``.
    ``path`` holds the offending file (or folder) when there is one.
    """

    def __init__(self, message: str, *, path=None):
        super().__init__(message)
        self.path = path

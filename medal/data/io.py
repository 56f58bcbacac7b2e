"""Reading and writing volumes: NIfTI through nibabel, NRRD / MHA / MHD through SimpleITK.

Array convention
----------------
A :class:`Volume` holds its voxels in the index order of its affine: ``array[i, j, k]`` sits at
``affine @ (i, j, k, 1)`` in RAS+ millimetres. That is nibabel's order; SimpleITK's ``(k, j, i)``
arrays are transposed on the way in and out, and its LPS geometry is converted to RAS, so the same
scan read from NIfTI or NRRD gives the same array and affine.

A load -> save -> load round trip keeps data, dtype and affine exactly. NIfTI headers (qform/sform
codes, units, description, intent) are carried in ``Volume.header`` and reused on save; derived
volumes made with :meth:`Volume.with_array` keep them, with the data type updated.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_path, full_suffix
from .errors import DatasetError

__all__ = ["Volume", "load_volume", "save_volume", "volume_affine", "volume_shape", "volume_spacing", "NIFTI_SUFFIXES", "ITK_SUFFIXES", "VOLUME_SUFFIXES", "WRITE_SUFFIXES"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True, eq=False)
class Volume:
    """A voxel array with its geometry.

    Attributes
    ----------
    array : ndarray
        Voxels, axes in the affine's index order (see the module docstring).
    affine : ndarray, shape (4, 4)
        Voxel index -> RAS+ world coordinates in mm.
    header : nibabel header or None
        The NIfTI header the volume was read with, reused when writing NIfTI.
    path : Path or None
        Where it was read from.
    """

    array: np.ndarray
    affine: np.ndarray
    header: object | None = field(default=None, repr=False)
    path: Path | None = None

    def __post_init__(self):
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis (column norms of the affine)."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @property
    def orientation(self) -> str:
        """Anatomical direction each array axis points to, e.g. ``"RAS"``."""
        import nibabel as nib

        return "".join(str(c) for c in nib.aff2axcodes(self.affine))

    def with_array(self, array: np.ndarray) -> "Volume":
        """A volume on the same grid (affine, header intent) holding ``array``."""
        array = np.asarray(array)
        if array.shape[:3] != self.array.shape[:3]:
            raise ValueError(f"array shape {array.shape} does not match volume grid {self.array.shape[:3]}")
        return Volume(array=array, affine=self.affine, header=self.header, path=None)


def _is_identity_scaling(dataobj) -> bool:
    # nibabel moves scl_slope / scl_inter from the header into the array proxy when loading
    slope, inter = getattr(dataobj, "slope", 1.0), getattr(dataobj, "inter", 0.0)
    return (slope is None or slope == 1.0) and (inter is None or inter == 0.0)


def _load_nifti(path: Path) -> Volume:
    import nibabel as nib

    img = nib.load(str(path))
    if _is_identity_scaling(img.dataobj):
        array = np.asarray(img.dataobj)
        header = img.header.copy()
    else:  # scaled storage: hand out the real values as float32
        array = np.asarray(img.dataobj, dtype=np.float32)
        header = img.header.copy()
        header.set_data_dtype(np.float32)
    return Volume(array=array, affine=img.affine, header=header, path=path)


def _load_itk(path: Path) -> Volume:
    import SimpleITK as sitk

    return _volume_from_sitk(sitk.ReadImage(str(path)), path)


def _volume_from_sitk(img, path: Path | None) -> Volume:
    """A SimpleITK image (LPS geometry, ``(k, j, i)`` arrays) as a :class:`Volume` (RAS, ``(i, j, k)``)."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(img)
    n = img.GetDimension()
    comps = img.GetNumberOfComponentsPerPixel()
    spatial = array.ndim - (1 if comps > 1 else 0)
    axes = tuple(reversed(range(spatial))) + tuple(range(spatial, array.ndim))
    array = np.ascontiguousarray(np.transpose(array, axes))
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(n, n)
    spacing = np.asarray(img.GetSpacing(), dtype=np.float64)
    origin = np.asarray(img.GetOrigin(), dtype=np.float64)
    m = min(n, 3)
    lps = np.eye(4)
    lps[:m, :m] = direction[:m, :m] * spacing[:m]
    lps[:m, 3] = origin[:m]
    return Volume(array=array, affine=_LPS_TO_RAS @ lps, header=None, path=path)


def _gzip_is_truncated(path: Path) -> bool:
    """Decompress the whole stream: True if it ends early or is corrupt."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError):
        return True
    return False


def _read_error(path: Path, exc: BaseException) -> DatasetError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.replace(f'"{path}"', "").replace(str(path), path.name).strip(" :")
    truncated = isinstance(exc, (EOFError, gzip.BadGzipFile, zlib.error)) or "EOF" in text or "truncat" in text.lower()
    if not truncated and path.name.lower().endswith(".gz") and _gzip_is_truncated(path):
        truncated, text = True, "the gzip stream ends early"
    if truncated:
        what = "file is truncated or its compressed data is corrupt"
    else:
        what = "cannot be read as a volume"
    detail = text if text.startswith("the gzip") else f"{type(exc).__name__}: {text}"
    return DatasetError(f"{path}: {what} ({detail})", path=path)


def load_volume(path, *, ndim: int | None = 3) -> Volume:
    """Read a NIfTI, NRRD, MHA or MHD file into a :class:`Volume`.

    The whole file is decompressed here, so a truncated ``.nii.gz`` fails now rather than later.
    With ``ndim=3`` (the default) the volume must be 3D; trailing length-1 axes (``X, Y, Z, 1``)
    are dropped first. ``ndim=None`` accepts any dimensionality.

    Raises
    ------
    DatasetError
        The file is missing, unreadable, truncated, of an unknown type or of the wrong dimension.
    """
    path = Path(path)
    suffix = full_suffix(path).lower()
    if suffix not in VOLUME_SUFFIXES:
        raise DatasetError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; expected one of {', '.join(VOLUME_SUFFIXES)}",
            path=path,
        )
    if not path.is_file():
        raise DatasetError(f"{path}: file not found", path=path)
    try:
        vol = _load_nifti(path) if suffix in NIFTI_SUFFIXES else _load_itk(path)
    except DatasetError:
        raise
    except Exception as exc:  # nibabel / SimpleITK raise many types for one cause: a bad file
        raise _read_error(path, exc) from exc
    if ndim is not None:
        array = vol.array
        while array.ndim > ndim and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != ndim:
            hint = (" (a multi-channel image? `medal dataset split-channels` writes its channels as _0000, _0001, "
                    "... files, which medal reads as the network's input channels)"
                    if array.ndim == ndim + 1 and ndim == 3 else "")
            raise DatasetError(
                f"{path}: expected a {ndim}D volume, got {array.ndim}D with shape {tuple(array.shape)}{hint}", path=path
            )
        if array is not vol.array:
            vol = Volume(array=array, affine=vol.affine, header=vol.header, path=path)
    return vol


def _nifti_image(volume: Volume):
    import nibabel as nib

    array = np.asarray(volume.array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    header = volume.header
    if header is not None and isinstance(header, nib.Nifti2Header):
        cls = nib.Nifti2Image
    else:
        cls = nib.Nifti1Image
    if header is not None and isinstance(header, (nib.Nifti1Header, nib.Nifti2Header)):
        header = header.copy()
        header.set_data_dtype(array.dtype)
        header.set_slope_inter(np.nan, np.nan)
        header.set_data_shape(array.shape)
    else:
        header = None
    img = cls(array, volume.affine, header=header)
    if header is None:
        img.header.set_xyzt_units("mm", "sec")
        img.set_qform(volume.affine, code="aligned")
        img.set_sform(volume.affine, code="aligned")
    return img


def _itk_image(volume: Volume):
    import SimpleITK as sitk

    array = np.asarray(volume.array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.ndim != 3:
        raise ValueError(f"only 3D volumes can be written as NRRD/MHA, got shape {array.shape}")
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    lps = _LPS_TO_RAS @ volume.affine
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    if np.any(spacing == 0):
        raise ValueError(f"affine has a zero-length axis: {volume.affine.tolist()}")
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in lps[:3, 3]])
    img.SetDirection([float(d) for d in (lps[:3, :3] / spacing).ravel()])
    return img


def save_volume(volume: Volume, path, *, overwrite: bool = True) -> Path:
    """Write ``volume`` atomically; the format follows the extension.

    With ``overwrite=False`` an existing file raises :class:`FileExistsError`: use it wherever an
    expert's labels could be replaced.
    """
    path = Path(path)
    suffix = full_suffix(path).lower()
    if suffix not in WRITE_SUFFIXES:
        raise ValueError(
            f"{path}: cannot write {suffix!r}; medal writes single-file formats only "
            f"({', '.join(WRITE_SUFFIXES)}) so that every write is one atomic rename"
        )
    if suffix in NIFTI_SUFFIXES:
        import nibabel as nib

        img = _nifti_image(volume)
        with atomic_path(path, overwrite=overwrite) as tmp:
            nib.save(img, str(tmp))
    else:
        import SimpleITK as sitk

        img = _itk_image(volume)
        with atomic_path(path, overwrite=overwrite) as tmp:
            sitk.WriteImage(img, str(tmp), True)
    return path


def volume_affine(path) -> np.ndarray:
    """The voxel-to-world (RAS) affine of a volume file from its header alone (as :attr:`Volume.affine`)."""
    path = Path(path)
    suffix = full_suffix(path).lower()
    if not path.is_file():  # else a missing .gz reads as a truncated one
        raise DatasetError(f"{path}: file not found", path=path)
    try:
        if suffix in NIFTI_SUFFIXES:
            import nibabel as nib

            return np.asarray(nib.load(str(path)).affine, dtype=np.float64)
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        n = reader.GetDimension()
        direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(n, n)
        m = min(n, 3)
        lps = np.eye(4)
        lps[:m, :m] = direction[:m, :m] * np.asarray(reader.GetSpacing(), dtype=np.float64)[:m]
        lps[:m, 3] = np.asarray(reader.GetOrigin(), dtype=np.float64)[:m]
        return _LPS_TO_RAS @ lps
    except Exception as exc:  # noqa: BLE001 - one cause, many exception types: a bad file
        raise _read_error(path, exc) from exc


def volume_spacing(path) -> tuple[float, ...]:
    """Voxel size in mm along each array axis from a volume file's header alone (as :attr:`Volume.spacing`)."""
    affine = volume_affine(path)
    return tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))


def volume_shape(path) -> tuple[int, ...]:
    """The array shape of a volume file from its header alone (no voxel is read)."""
    path = Path(path)
    suffix = full_suffix(path).lower()
    try:
        if suffix in NIFTI_SUFFIXES:
            import nibabel as nib

            shape = tuple(int(s) for s in nib.load(str(path)).shape)
        else:
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            shape = tuple(int(s) for s in reader.GetSize())
    except Exception as exc:  # noqa: BLE001 - one cause, many exception types: a bad file
        raise _read_error(path, exc) from exc
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape

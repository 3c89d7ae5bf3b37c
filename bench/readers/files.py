"""Reading image files: volumes (NIfTI, NRRD/MHA/DICOM, NumPy) and 2D images.

Every function here turns any failure to read a file into a one-line
:class:`bench.errors.DataError` naming the file, so that a truncated
download or a corrupt header is reported, never a traceback.

Volumes are returned in NIfTI index order ``(i, j, k)`` with a 4x4 RAS affine,
whatever their format: SimpleITK's ``(z, y, x)`` arrays are transposed back to
``(x, y, z)`` and its LPS geometry converted, so a card's ``axis`` means the
same for a ``.nii.gz`` and a ``.nrrd`` of the same scan.
"""

from __future__ import annotations

import gzip
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import DataError

ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
ITK_HINT = "pip install 'medsam2-bench[itk]'"

# Deflate cannot do better than about 1032:1 (258-byte matches in 2-bit codes),
# so a gzip file of n bytes never holds more than this many times n.
DEFLATE_MAX_RATIO = 1032
# A claim the file cannot hold but smaller than this is left to the parser, which
# fails cheaply with its own message (a truncated download); larger ones are
# refused before an array of that size is allocated.
CHEAP_CLAIM_BYTES = 64 * 2**20


class MissingDependency(ImportError):
    """An optional package needed for a file format is not installed."""


@dataclass
class Volume:
    """A volume read from disk, in NIfTI index order.

    Attributes
    ----------
    array : ndarray
        3D (or 4D with channels last) array, index order ``(i, j, k)``.
    spacing : tuple of float
        Voxel size in mm along ``i, j, k``.
    affine : ndarray
        4x4 voxel-to-RAS (mm) matrix.
    format : str
        ``"nifti"``, ``"itk"`` or ``"npy"``.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    format: str


def suffix(path: Path) -> str:
    """Lower-case suffix including a ``.gz`` companion (``.nii.gz``, ``.ppm.gz``)."""
    name = path.name.lower()
    for double in (".nii.gz", ".ppm.gz", ".pgm.gz", ".npy.gz"):
        if name.endswith(double):
            return double
    return path.suffix.lower()


def read_volume(path: Path, role: str = "image", spacing: tuple[float, ...] | None = None
                ) -> Volume:
    """Read a volume from ``path``.

    Parameters
    ----------
    path : Path
        ``.nii`` / ``.nii.gz`` (nibabel), ``.nrrd`` / ``.nhdr`` / ``.mha`` /
        ``.mhd`` or a folder of DICOM files (SimpleITK, optional), ``.npy``.
    role : {"image", "label"}
        Images with a NIfTI scaling (``scl_slope``) are returned as float32
        with it applied, others with their stored values and type; labels
        always keep their stored values.
    spacing : tuple of float, optional
        Voxel size for formats without geometry (``.npy``); default 1 mm.

    Raises
    ------
    DataError
        The file is missing, truncated or unreadable, or its voxel spacing is
        zero, negative or NaN.
    MissingDependency
        SimpleITK is needed but not installed.
    """
    if not path.exists():
        raise DataError(path, "file not found")
    kind = suffix(path)
    try:
        if kind in (".nii", ".nii.gz"):
            return _read_nifti(path, role)
        if kind in (".npy", ".npy.gz"):
            return _read_npy(path, spacing)
        if kind in ITK_SUFFIXES or path.is_dir():
            return _read_itk(path)
    except (DataError, MissingDependency):  # already one line naming the file
        raise
    except volume_file_errors() as err:  # a parser's failure is a problem of this file
        raise DataError(path, f"unreadable ({_describe(err)})") from None
    except MemoryError:  # a size the checks let through, but more than is free now
        raise DataError(path, "too large to read: out of memory (MemoryError) while reading "
                              "it") from None
    raise DataError(path, f"unsupported volume format {kind!r}")


def volume_file_errors() -> tuple[type[BaseException], ...]:
    """What nibabel, numpy and SimpleITK raise on a damaged or foreign file.

    Deliberately not ``Exception``: a bug in the reading code (a TypeError, an
    AttributeError) must surface as a bug, not be recorded as a bad file.
    """
    import zlib

    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    # SimpleITK raises RuntimeError; truncated gzip streams raise EOFError or
    # zlib.error; nibabel and numpy raise OSError and ValueError subclasses.
    return (OSError, EOFError, ValueError, RuntimeError, zlib.error, ImageFileError,
            HeaderDataError)


def check_spacing(spacing: tuple[float, ...] | None, path: Path | str) -> None:
    """Refuse a zero, negative or non-finite voxel spacing (never read as 1 mm).

    Raises
    ------
    DataError
        Naming the file and the spacing found.
    """
    if spacing is None:
        return
    if not all(math.isfinite(v) and v > 0 for v in spacing):
        raise DataError(path, f"invalid voxel spacing {tuple(float(v) for v in spacing)} in "
                              "the header (zero, negative or NaN): fix the file's header; "
                              "distances in mm cannot be computed from it")


# A container's memory limit (cgroup v2, then v1): below the machine's memory there.
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"),
                 Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def memory_bytes() -> int | None:
    """The memory this process may use, in bytes: the machine's physical memory, or a
    container's limit when lower (None where the system says neither)."""
    found = []
    try:
        found.append(int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES")))
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows), or no such name
        pass
    for path in CGROUP_LIMITS:
        try:
            found.append(int(path.read_text().strip()))
        except (OSError, ValueError):  # absent, or "max" (no limit)
            continue
    return min(found) if found else None


def check_claimed_size(path: Path, shape: tuple[int, ...], dtype: np.dtype | str,
                       data_offset: int = 0, compressed: bool | None = None) -> None:
    """Refuse a header whose array could not be in the file or in memory, before reading.

    A corrupt header (or a crafted one) claiming, say, 30000 x 30000 x 3000
    voxels would otherwise make the reader allocate terabytes and die with a
    MemoryError. Nothing is read but the file's size.

    Parameters
    ----------
    path : Path
        The file (named in the error).
    shape, dtype
        What the header claims.
    data_offset : int
        Where the data start in an uncompressed file (the header's size).
    compressed : bool, optional
        A gzip file (default: by its ``.gz`` suffix); its data can be at most
        :data:`DEFLATE_MAX_RATIO` times its size.

    Raises
    ------
    DataError
        One line naming the file, the claimed shape and size, and the limit.
    """
    on_disk = path.stat().st_size
    if compressed is None:
        compressed = path.name.lower().endswith(".gz")
    if compressed:
        most = DEFLATE_MAX_RATIO * on_disk
        held = f"a gzip file of {_size(on_disk)} holds at most {_size(most)}"
    else:
        most = max(on_disk - data_offset, 0)
        held = f"the file holds {_size(most)} of data"
    _check_claim(path, shape, np.dtype(dtype), most, held)


def _check_claim(path: Path, shape: tuple[int, ...], dtype: np.dtype, most: int | None = None,
                 held: str = "") -> None:
    """Refuse ``shape`` x ``dtype`` beyond ``most`` bytes (``held`` says why; None: no
    bound from the file) or beyond memory."""
    size = math.prod(int(n) for n in shape) * dtype.itemsize
    claim = f"header claims shape {tuple(int(n) for n in shape)} of {dtype.name} ({_size(size)})"
    if most is not None and size > most and size > CHEAP_CLAIM_BYTES:
        raise DataError(path, f"{claim}, but {held}: a corrupt header or a truncated file; "
                              "refused before reading")
    memory = memory_bytes()
    if memory is not None and size > memory:
        raise DataError(path, f"{claim}, more than this machine's memory ({_size(memory)}): a "
                              "corrupt header, or a volume too large to read here; refused "
                              "before reading")


def _size(count: int) -> str:
    """A byte count for people: ``5.4 TB``, ``352 bytes``."""
    if count < 1000:
        return f"{count} bytes"
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        count /= 1000
        if count < 1000 or unit == "PB":
            return f"{count:.1f} {unit}"
    raise AssertionError("unreachable")


def _read_nifti(path: Path, role: str) -> Volume:
    import nibabel as nib
    from nibabel.openers import ImageOpener

    image = nib.load(str(path))
    check_claimed_size(path, image.shape, image.get_data_dtype(),
                       int(getattr(image.dataobj, "offset", 0)))
    # nibabel "fixes" a zero pixdim to 1 and a negative one to its absolute value
    # on load: check the stored values, so that a broken header is refused
    with ImageOpener(str(path)) as handle:
        stored = type(image.header).from_fileobj(handle, check=False)
    check_spacing(tuple(float(v) for v in stored["pixdim"][1:1 + min(3, image.ndim)]), path)
    proxy = image.dataobj
    slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
    unscaled = (slope in (1.0, None) or np.isnan(slope)) and (inter in (0.0, None)
                                                                or np.isnan(inter))
    if role == "label" or unscaled:
        # stored values as stored: the caller converts once (no float64 detour)
        array = np.asarray(proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else proxy)
    else:
        array = image.get_fdata(dtype=np.float32)
    # zooms are stored as float32: round to what the header author wrote (0.7, not 0.69999999)
    zooms = tuple(float(f"{float(z):.6g}") for z in image.header.get_zooms()[:3])
    return Volume(array, zooms, np.asarray(image.affine, dtype=float), "nifti")


def _read_npy(path: Path, spacing: tuple[float, ...] | None) -> Volume:
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            data = io.BytesIO(handle.read())
        _check_npy_header(path, data, len(data.getvalue()))
        array = np.load(data, allow_pickle=False)
    else:
        with path.open("rb") as handle:
            _check_npy_header(path, handle, path.stat().st_size)
        array = np.load(path, allow_pickle=False)
    if array.ndim < 2:
        raise DataError(path, f"expected a 2D or 3D array, got shape {array.shape}")
    dims = min(array.ndim, 3)
    zooms = tuple(float(s) for s in (spacing or (1.0,) * dims))[:dims]
    if len(zooms) != dims:
        raise DataError(path, f"spacing {spacing} does not fit shape {array.shape}")
    affine = np.diag([*zooms, *([1.0] * (4 - dims))])
    return Volume(array, zooms, affine, "npy")


def _check_npy_header(path: Path, handle, total: int) -> None:
    """:func:`check_claimed_size` for a ``.npy`` stream of ``total`` bytes (rewound after).

    ``handle`` holds the uncompressed ``.npy`` bytes (a ``.npy.gz`` is
    decompressed first), so the data can be no larger than what follows the
    header. Headers that numpy cannot parse are left to ``np.load``'s message.
    """
    from numpy.lib import format as npy

    start = handle.tell()
    try:
        version = npy.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = npy.read_array_header_2_0(handle)
        else:
            return
        offset = handle.tell() - start
    except (ValueError, OSError, EOFError, SyntaxError):  # np.load says what is wrong
        return
    finally:
        handle.seek(start)
    most = max(total - offset, 0)
    _check_claim(path, shape, dtype, most, f"the file holds {_size(most)} of data")


def itk():
    """Import SimpleITK, or raise a clear error saying how to install it."""
    try:
        import SimpleITK
    except ImportError:
        raise MissingDependency(
            f"reading NRRD/MHA/DICOM needs SimpleITK, which is not installed: {ITK_HINT}"
        ) from None
    return SimpleITK


def _read_itk(path: Path) -> Volume:
    sitk = itk()
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        names = reader.GetGDCMSeriesFileNames(str(path))
        if not names:
            raise DataError(path, "folder holds no DICOM series")
        reader.SetFileNames(names)
        image = reader.Execute()
    else:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()  # the header alone: refuse an absurd size first
        _check_itk_claim(path, reader)
        image = reader.Execute()
    if image.GetDimension() != 3:
        raise DataError(path, f"expected a 3D image, got {image.GetDimension()}D")
    array = sitk.GetArrayFromImage(image)  # (z, y, x[, c])
    axes = (2, 1, 0) + tuple(range(3, array.ndim))
    array = np.transpose(array, axes)
    spacing = tuple(float(f"{s:.6g}") for s in image.GetSpacing())  # 0.78125, not 0.7812499
    check_spacing(spacing, path)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = lps_to_ras @ direction @ np.diag(spacing)
    affine[:3, 3] = lps_to_ras @ np.asarray(image.GetOrigin(), dtype=float)
    return Volume(array, spacing, affine, "itk")


def _check_itk_claim(path: Path, reader) -> None:
    """:func:`check_claimed_size` from a SimpleITK reader's header information.

    Only the memory bound applies: the data may be in another file (``.mhd``,
    ``.nhdr``) and compressed or not.
    """
    name = itk().GetPixelIDValueAsString(reader.GetPixelID())  # "16-bit signed integer"
    bits = next((int(word.split("-")[0]) for word in name.split() if word.endswith("-bit")), 64)
    kind = "f" if "float" in name else "u" if "unsigned" in name or "signed" not in name else "i"
    components = reader.GetNumberOfComponents()
    shape = (*reader.GetSize(), *((components,) if components > 1 else ()))
    _check_claim(path, shape, np.dtype(f"{kind}{max(bits // 8, 1)}"))


def image_file_errors() -> tuple[type[BaseException], ...]:
    """What PIL (and gzip) raise on a damaged, truncated or foreign image file.

    Deliberately not ``Exception``, as :func:`volume_file_errors`. PIL raises
    ``UnidentifiedImageError`` (an OSError) for a foreign file, OSError for a
    truncated one, SyntaxError for broken PNG chunks, ``DecompressionBombError``
    for an absurd size; gzip raises OSError, EOFError or zlib.error.
    """
    import struct
    import zlib

    from PIL import Image

    return (OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error,
            Image.DecompressionBombError)


def _open_image(path: Path):
    from PIL import Image

    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            data = io.BytesIO(handle.read())
        image = Image.open(data)
    else:
        image = Image.open(path)
    image.load()  # decode now so that truncated files fail here
    return image


def read_image2d(path: Path) -> np.ndarray:
    """Read a 2D image as ``(H, W)`` grey or ``(H, W, 3)`` RGB, dtype as stored.

    Palette, RGBA, CMYK and two-level images become RGB or grey uint8; 16-bit
    grey images keep their values.
    """
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        image = _open_image(path)
    except image_file_errors() as err:  # a bad file (PIL's plugins raise several types)
        raise DataError(path, f"unreadable image ({_describe(err)})") from None
    except MemoryError:  # a size within PIL's bomb limit but beyond what is free now
        raise DataError(path, "too large to read: out of memory (MemoryError) while reading "
                              "it") from None
    # Outside the try: a fault in the conversion is a bug, not a property of the file.
    return image_array(image)


def image_array(image) -> np.ndarray:
    """A PIL image as ``(H, W)`` grey or ``(H, W, 3)`` RGB array."""
    if image.mode in ("1", "LA"):
        image = image.convert("L")
    elif image.mode == "P":
        image = image.convert("RGB")
    if image.mode in ("RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 4:
        array = np.ascontiguousarray(array[..., :3])
    return array


def read_mask2d(path: Path, channel: int | None = None, encoding: str = "grey"
                ) -> np.ndarray:
    """Read a 2D mask as an ``(H, W)`` array of grey levels or label values.

    Two-level images become 0/255; palette images are read by ``encoding``
    (see :func:`mask_array`); colour masks must have equal channels unless
    ``channel`` picks one.
    """
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        image = _open_image(path)
    except image_file_errors() as err:  # a bad file (PIL's plugins raise several types)
        raise DataError(path, f"unreadable mask ({_describe(err)})") from None
    except MemoryError:  # a size within PIL's bomb limit but beyond what is free now
        raise DataError(path, "too large to read: out of memory (MemoryError) while reading "
                              "it") from None
    return mask_array(image, channel, path, encoding)


def mask_array(image, channel: int | None, where: Path | str, encoding: str = "grey"
               ) -> np.ndarray:
    """A PIL image (or array) as an ``(H, W)`` mask array (see :func:`read_mask2d`).

    ``encoding`` is the card's: ``"grey"`` reads grey levels (a palette image
    must have a grey palette, read as the grey levels it shows) and
    ``"palette"`` reads the palette indices of a palette image (VOC style).

    Raises
    ------
    DataError
        A colour palette without ``encoding = "palette"``, ``"palette"`` for an
        image without a palette, colour masks with unequal channels.
    """
    mode = getattr(image, "mode", None)
    if encoding == "palette" and mode is not None and mode != "P":
        raise DataError(where, f"options.encoding = 'palette' but the mask is not a palette "
                               f"image (mode {mode}); remove the option")
    if mode == "1":
        image = image.convert("L")
    elif mode == "P" and encoding != "palette":
        palette = np.asarray(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        if not (palette.size and np.all(palette == palette[:, :1])):
            raise DataError(where, "palette (colour-indexed) mask: its pixels are palette "
                                   "indices; set options.encoding = 'palette' to read them "
                                   "as label values")
        image = image.convert("L")  # a grey palette: the grey levels it shows
    elif mode in ("LA", "RGBA"):
        image = image.convert(mode[:-1])
    array = np.asarray(image)
    if array.ndim == 3:
        if channel is not None:
            array = array[..., channel]
        elif np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(
                array[..., 0], array[..., 2]):
            array = array[..., 0]
        else:
            raise DataError(where, "colour mask with unequal channels; set the card option "
                                   "mask_channel to pick one")
    if array.ndim != 2:
        raise DataError(where, f"expected a 2D mask, got shape {array.shape}")
    return np.ascontiguousarray(array)


def read_array2d(path: Path) -> np.ndarray:
    """Read a 2D ``.npy`` array (for example a mask slice)."""
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:  # what np.load raises for a bad file
        raise DataError(path, f"unreadable array ({_describe(err)})") from None
    array = np.squeeze(array)
    if array.ndim != 2:
        raise DataError(path, f"expected a 2D array, got shape {array.shape}")
    return array


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "no message"
    return f"{type(err).__name__}: {text[:200]}"

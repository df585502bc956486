"""Read microscope images (Velox/Berkeley EMD, DM3/DM4, SER, TIFF, MRC, NPY/NPZ, PNG/JPEG).

:func:`read_image` opens a file as it comes off the microscope and returns one 2-D
``float32`` image, its pixel size in Å and a JSON-serialisable metadata dictionary::

    image, pixel_size_angstrom, metadata = read_image("haadf.emd")

Readers: h5py (Velox EMD), ncempy (Berkeley EMD, DM3/DM4, SER, MRC), tifffile (TIFF),
Pillow (PNG/JPEG), numpy (NPY/NPZ, never with pickles).

Calibration rules
-----------------
* ``pixel_size_angstrom=`` always wins (``metadata["calibration"] == "override"``).
* Otherwise the file's calibration is used (``"file"``), converted to Å from whatever length
  unit the file states (m, cm, mm, µm, nm, pm, Å; ``n_m``-style Berkeley units too). A file
  calibration outside 0.005–50 Å/px is an error (pass ``pixel_size_angstrom=`` to override).
* Without a usable calibration (no tag, unit "pixel", reciprocal units, placeholders) the
  ``default_pixel_size_angstrom`` is used with a :class:`UserWarning`
  (``metadata["calibration"] == "assumed"``).
* Non-square pixels (x and y sizes differing by more than 1 %) give a warning and their mean.

Where each format keeps its calibration:

* Velox EMD: ``BinaryResult.PixelSize`` (width = x, height = y) with ``PixelUnitX/Y``.
* Berkeley EMD: the spacing of the ``dim`` vectors and their ``units`` attribute.
* DM3/DM4: the image calibrations (scale and unit per axis); unit "" means uncalibrated.
* SER: the per-element calibration deltas, always metres.
* TIFF, in this order: FEI/Thermo tags (``Scan.PixelWidth`` [m]), OME-XML
  ``PhysicalSizeX/Y`` (+ unit, µm by default), a Nion Swift JSON description
  (``spatial_calibrations``), ImageJ (``unit=`` in the description, X/YResolution = pixels
  per unit), and plain resolution tags in cm or inch only when they give a plausible pixel
  size (72 dpi and friends are print resolutions, not calibrations).
* MRC: cell length / grid size [Å], or the FEI extended header [m]; a cell of 0 or a pixel
  size of exactly 1 Å (the usual "not calibrated" placeholder) counts as uncalibrated.
* NPY: none.
* NPZ: the image is the array under ``im_array``, ``image``, ``img``, ``data``, ``array``,
  ``stack``, ``frames`` or ``arr_0`` (first found), else the only 2-D/3-D numeric array, else
  the largest one (with a warning). The pixel size is the first of ``pixel_size_angstrom``
  (Å), ``pixel_size_nm``, ``pixel_size_pm``, ``pixel_size_m``, ``pixel_size`` (also
  ``pixelsize``, ``pixel_size_x``). Its value may be a number, a one- or two-element array
  (y, x) or a string such as ``"1.06e-11"`` or ``"10.6 pm"``. For a bare ``pixel_size``
  the unit comes from a ``pixel_unit``/``pixel_size_unit``/``unit``/``units`` entry or the
  string itself; with no unit at all a value below 1e-6 is read as metres (the Gomb-Net
  convention, e.g. ``"1.062e-11"``) and any other value as Å with a warning.
* PNG/JPEG: none.

Frames
------
3-D data is a stack of frames. Velox stores frames on the last axis, DM, SER, MRC, TIFF
pages and Berkeley EMD (the axis whose unit is not a length) on the first. For NPY/NPZ the
frame axis is the shortest axis (the first on ties), and a ``uint8`` array whose last axis has
3 or 4 entries is an RGB(A) picture. ``frame="sum"`` adds all frames (optionally after rigid
alignment), an integer picks one frame (negative indices count from the end).

RGB(A) data is converted to grey with the Rec. 709 luminance weights (as
``skimage.color.rgb2gray``) and a :class:`UserWarning`; alpha is dropped.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gombnet.errors import GombnetError

__all__ = ["MicroscopeImage", "read_image", "SUPPORTED_EXTENSIONS"]

#: File name endings :func:`read_image` understands (case-insensitive).
SUPPORTED_EXTENSIONS = (
    ".emd", ".dm3", ".dm4", ".ser", ".tif", ".tiff", ".mrc", ".npy", ".npz", ".png", ".jpg", ".jpeg",
)

MIN_SIZE_PX = 32
MIN_PIXEL_SIZE_ANGSTROM = 0.005
MAX_PIXEL_SIZE_ANGSTROM = 50.0

# Rec. 709 luminance, the weights of skimage.color.rgb2gray
_RGB_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])

_ANGSTROM_PER_UNIT = {
    "m": 1e10, "meter": 1e10, "metre": 1e10, "meters": 1e10, "metres": 1e10,
    "cm": 1e8, "centimeter": 1e8, "centimetre": 1e8,
    "mm": 1e7, "millimeter": 1e7, "millimetre": 1e7,
    "µm": 1e4, "um": 1e4, "micron": 1e4, "microns": 1e4, "micrometer": 1e4, "micrometre": 1e4,
    "micrometers": 1e4, "micrometres": 1e4,
    "nm": 10.0, "nanometer": 10.0, "nanometre": 10.0, "nanometers": 10.0, "nanometres": 10.0,
    "pm": 0.01, "picometer": 0.01, "picometre": 0.01, "picometers": 0.01, "picometres": 0.01,
    "å": 1.0, "a": 1.0, "ang": 1.0, "angstrom": 1.0, "angstroms": 1.0, "ångström": 1.0,
    "ångstrom": 1.0, "ångströms": 1.0,
}
_NO_UNIT = {"", "pixel", "pixels", "px", "pix", "none", "unit", "units", "arb", "a.u.", "au"}


class MicroscopeImage(NamedTuple):
    """One image read from a microscope file.

    Attributes
    ----------
    image : numpy.ndarray
        2-D ``float32`` image (rows = y, columns = x), finite and not constant.
    pixel_size_angstrom : float
        Pixel size [Å/px].
    metadata : dict
        JSON-serialisable: ``source``, ``format``, ``original_dtype``, ``original_shape``,
        ``calibration`` (``"file"``, ``"override"`` or ``"assumed"``), ``calibration_detail``,
        ``pixel_size_file_angstrom``, ``frames``, ``warnings``, ``microscope`` (voltage,
        detector, ... where the file has them) and format-specific entries.
    """

    image: np.ndarray
    pixel_size_angstrom: float
    metadata: dict


@dataclass
class _Raw:
    """What a format reader hands back before the common processing."""

    data: np.ndarray
    fmt: str
    frame_axis: int | None = None  # axis of frames in `data` for 3-D data; None: NPY rule
    rgb_axis: int | None = None  # axis of colour samples, if any
    # ((value_y, unit_y), (value_x, unit_x)); units are strings, "A" for Å
    calibration: tuple[tuple[float, str], tuple[float, str]] | None = None
    calibration_detail: str = ""
    calibration_problem: str = "the file has no pixel-size calibration"
    microscope: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # warnings to emit
    original_dtype: str = ""
    original_shape: tuple = ()


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------


def read_image(
    path: str | os.PathLike,
    *,
    pixel_size_angstrom: float | None = None,
    frame: int | str = "sum",
    align_frames: bool = False,
    default_pixel_size_angstrom: float = 0.106,
) -> MicroscopeImage:
    """Read a microscope image as a 2-D float32 array with its pixel size in Å.

    Parameters
    ----------
    path : str or os.PathLike
        ``.emd`` (Velox or Berkeley), ``.dm3``, ``.dm4``, ``.ser``, ``.tif``/``.tiff``,
        ``.mrc``, ``.npy``, ``.npz``, ``.png``, ``.jpg``/``.jpeg``.
    pixel_size_angstrom : float, optional
        Pixel size [Å/px] that replaces the file's calibration.
    frame : "sum" or int, default "sum"
        For frame stacks: ``"sum"`` adds all frames, an integer picks one (negative indices
        count from the end). A single image counts as one frame.
    align_frames : bool, default False
        With ``frame="sum"``: register every frame to the stack by cross-correlation
        (rigid, sub-pixel) before adding. Borders uncovered by a shift are filled with the
        nearest edge values; shifts are stored in ``metadata["frames"]["shifts_px"]``.
        For perfect crystals shifts are only defined modulo a lattice vector, so this
        corrects drift smaller than about half a lattice period only.
    default_pixel_size_angstrom : float, default 0.106
        Pixel size [Å/px] assumed (with a warning) when the file has no calibration.

    Returns
    -------
    MicroscopeImage
        ``(image, pixel_size_angstrom, metadata)``; see :class:`MicroscopeImage`.

    Raises
    ------
    GombnetError
        Missing file, unsupported extension, unreadable/corrupt file, data that is not a
        2-D image or 3-D stack, NaN/inf values, a constant image, an image smaller than
        32 px, an out-of-range frame, or a pixel size outside 0.005–50 Å/px.

    Warns
    -----
    UserWarning
        RGB data converted to grey, missing calibration (assumed pixel size), non-square
        pixels, ambiguous units or dataset choices.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise GombnetError(f"path must be a file name, got {type(path).__name__}")
    path = Path(path)
    name = str(path)
    _check_arguments(name, pixel_size_angstrom, frame, align_frames, default_pixel_size_angstrom)

    if not path.exists():
        raise GombnetError(f"{name}: file not found")
    if path.is_dir():
        raise GombnetError(f"{name}: is a directory, not an image file")
    ext = path.suffix.lower()
    if ext not in _READERS:
        raise GombnetError(
            f"{name}: unsupported file type {path.suffix or '(no extension)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if path.stat().st_size == 0:
        raise GombnetError(f"{name}: file is empty")

    try:
        raw = _READERS[ext](path)
    except GombnetError:
        raise
    except MemoryError as exc:
        raise GombnetError(f"{name}: not enough memory to read the file ({exc})") from exc
    except Exception as exc:  # readers raise anything on corrupt input; report it as a user error
        detail = _one_line(f"{type(exc).__name__}: {exc}")
        raise GombnetError(
            f"{name}: cannot read the file as {ext[1:].upper()} (corrupt, truncated or not this format): {detail}"
        ) from exc

    notes = list(raw.notes)
    stack, frame_axis_name = _to_stack(raw, name, notes)
    image, frames_info = _select_frames(stack, name, frame, align_frames)
    frames_info["axis"] = frame_axis_name
    _check_image(image, name)

    px, calibration, file_px, detail = _resolve_pixel_size(
        raw, name, pixel_size_angstrom, default_pixel_size_angstrom, notes
    )

    metadata = {
        "source": str(path.resolve()),
        "format": raw.fmt,
        "original_dtype": raw.original_dtype or str(raw.data.dtype),
        "original_shape": list(raw.original_shape or raw.data.shape),
        "shape": list(image.shape),
        "pixel_size_angstrom": px,
        "calibration": calibration,
        "calibration_detail": detail,
        "pixel_size_file_angstrom": file_px,
        "frames": frames_info,
        "microscope": raw.microscope,
        "warnings": notes,
    }
    for key, value in raw.extra.items():
        metadata.setdefault(key, value)
    metadata = _jsonable(metadata)

    for message in notes:
        warnings.warn(message, UserWarning, stacklevel=2)
    return MicroscopeImage(np.ascontiguousarray(image, dtype=np.float32), float(px), metadata)


# --------------------------------------------------------------------------------------------
# argument and data checks
# --------------------------------------------------------------------------------------------


def _check_arguments(name, pixel_size_angstrom, frame, align_frames, default_pixel_size_angstrom):
    if pixel_size_angstrom is not None:
        _check_pixel_size(name, pixel_size_angstrom, "pixel_size_angstrom")
    _check_pixel_size(name, default_pixel_size_angstrom, "default_pixel_size_angstrom")
    if isinstance(frame, str):
        if frame != "sum":
            raise GombnetError(f"{name}: frame must be 'sum' or a frame index, got {frame!r}")
    elif isinstance(frame, (bool, np.bool_)) or not isinstance(frame, (int, np.integer)):
        raise GombnetError(f"{name}: frame must be 'sum' or an integer frame index, got {frame!r}")
    if not isinstance(align_frames, (bool, np.bool_)):
        raise GombnetError(f"{name}: align_frames must be True or False, got {align_frames!r}")


def _check_pixel_size(name: str, value, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise GombnetError(f"{name}: {what} must be a number [Å/px], got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise GombnetError(f"{name}: {what} must be a positive finite number [Å/px], got {value!r}")
    if not MIN_PIXEL_SIZE_ANGSTROM <= value <= MAX_PIXEL_SIZE_ANGSTROM:
        raise GombnetError(
            f"{name}: {what}={value:g} Å/px is outside the plausible range "
            f"{MIN_PIXEL_SIZE_ANGSTROM:g}–{MAX_PIXEL_SIZE_ANGSTROM:g} Å/px"
        )
    return value


def _to_stack(raw: _Raw, name: str, notes: list) -> tuple[np.ndarray, str]:
    """Bring the data to (frames, rows, cols); convert colour to grey."""
    data = raw.data
    if data.dtype.kind not in "biuf":
        kind = "complex" if data.dtype.kind == "c" else f"non-numeric ({data.dtype})"
        raise GombnetError(f"{name}: image data is {kind}; gombnet needs real intensities")
    frame_axis = raw.frame_axis
    if raw.rgb_axis is not None:
        data, frame_axis = _rgb_to_grey(data, raw.rgb_axis, frame_axis, name, notes)

    if data.ndim not in (2, 3):
        # drop length-1 axes (e.g. a single frame stored as 1 x H x W x 1)
        keep = [i for i, n in enumerate(data.shape) if n != 1]
        if frame_axis is not None:
            frame_axis = keep.index(frame_axis) if frame_axis in keep else None
        data = data.reshape([data.shape[i] for i in keep])
    if data.ndim < 2:
        raise GombnetError(
            f"{name}: data is {data.ndim}-D (shape {tuple(raw.data.shape)}); gombnet reads 2-D images"
        )
    if data.ndim > 3:
        raise GombnetError(
            f"{name}: data is {data.ndim}-D (shape {tuple(raw.data.shape)}); gombnet reads 2-D images "
            "or 3-D frame stacks only"
        )
    if data.ndim == 2:
        return data[np.newaxis], "none"
    if frame_axis is None:
        frame_axis = int(np.argmin(data.shape))  # shortest axis, first on ties
    axis_name = {0: "first", 1: "second", 2: "last"}[frame_axis]
    return np.moveaxis(data, frame_axis, 0), axis_name


def _rgb_to_grey(data, rgb_axis, frame_axis, name, notes):
    channels = data.shape[rgb_axis]
    data = np.moveaxis(data, rgb_axis, -1)
    if frame_axis is not None and frame_axis > rgb_axis:
        frame_axis -= 1
    if channels in (1, 2):  # grey (+ alpha)
        grey = data[..., 0].astype(np.float64)
        if channels == 2:
            notes.append(f"{name}: grey+alpha image; the alpha channel was dropped")
        return grey, frame_axis
    rgb = data[..., :3].astype(np.float64)
    grey = rgb @ _RGB_WEIGHTS
    identical = bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))
    what = "RGBA" if channels == 4 else "RGB"
    if identical:
        notes.append(f"{name}: {what} image converted to grey (its three channels are identical)")
    else:
        notes.append(
            f"{name}: {what} image converted to grey (luminance 0.2125 R + 0.7154 G + 0.0721 B); "
            "a false-colour picture does not give HAADF intensities, export the raw grey data if you can"
        )
    return grey, frame_axis


def _select_frames(stack: np.ndarray, name: str, frame, align: bool):
    n, height, width = stack.shape
    if n == 0:
        raise GombnetError(f"{name}: the frame stack is empty")
    if height < MIN_SIZE_PX or width < MIN_SIZE_PX:
        raise GombnetError(
            f"{name}: image is {height}x{width} px; at least {MIN_SIZE_PX} px are needed in each direction"
        )
    info: dict[str, Any] = {"count": int(n), "aligned": False, "shifts_px": None}
    if isinstance(frame, str):  # "sum"
        info.update(mode="sum", index=None)
        for k in range(n):
            _check_finite(stack[k], name, f" in frame {k}" if n > 1 else "")
        if align and n > 1:
            image, shifts = _align_and_sum(stack)
            info.update(aligned=True, shifts_px=shifts)
        else:
            image = np.zeros((height, width), dtype=np.float64)
            for k in range(n):  # frame by frame keeps the memory at one float64 image
                image += stack[k]
        return image, info
    k = int(frame)
    if not -n <= k < n:
        raise GombnetError(f"{name}: frame {k} is out of range; the file has {n} frame(s) (0..{n - 1})")
    k %= n
    info.update(mode="single", index=k)
    image = np.asarray(stack[k], dtype=np.float64)
    _check_finite(image, name, f" in frame {k}" if n > 1 else "")
    return image, info


def _check_finite(image: np.ndarray, name: str, where: str = "") -> None:
    if image.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(image)))
        if bad:
            raise GombnetError(f"{name}: image has {bad} NaN/inf value(s){where}")


def _check_image(image: np.ndarray, name: str) -> None:
    _check_finite(image, name)  # frames were checked; a sum of finite values can still overflow
    if float(image.max()) == float(image.min()):
        raise GombnetError(f"{name}: image is constant (every pixel = {float(image.flat[0]):g})")


def _align_and_sum(stack: np.ndarray) -> tuple[np.ndarray, list]:
    """Rigid sub-pixel registration of every frame, then the sum.

    Pass 1 registers each frame to frame 0, pass 2 to the mean of the pass-1 result (less
    noisy). Frames are smoothed and Hann-windowed for the correlation only, and plain
    cross-correlation is used because phase normalisation amplifies shot noise.
    """
    from scipy import ndimage as ndi
    from skimage.filters import window
    from skimage.registration import phase_cross_correlation

    n, height, width = stack.shape
    win = window("hann", (height, width))

    def prepared(img):
        img = ndi.gaussian_filter(np.asarray(img, dtype=np.float64), 1.0)
        return (img - img.mean()) * win

    def register(reference):
        ref = prepared(reference)
        shifts = []
        for k in range(n):
            shift, _, _ = phase_cross_correlation(
                ref, prepared(stack[k]), upsample_factor=20, normalization=None
            )
            shifts.append(np.asarray(shift, dtype=np.float64))
        return shifts

    def shifted_sum(shifts):
        total = np.zeros((height, width), dtype=np.float64)
        for k in range(n):
            frame = np.asarray(stack[k], dtype=np.float64)
            if np.any(shifts[k] != 0):
                frame = ndi.shift(frame, shifts[k], order=3, mode="nearest")
            total += frame
        return total

    shifts = register(stack[0])
    total = shifted_sum(shifts)
    shifts = register(total / n)
    # express the shifts relative to frame 0 so an already aligned frame 0 stays put
    shifts = [s - shifts[0] for s in shifts]
    total = shifted_sum(shifts)
    return total, [[round(float(s[0]), 3), round(float(s[1]), 3)] for s in shifts]


# --------------------------------------------------------------------------------------------
# pixel size
# --------------------------------------------------------------------------------------------


def _unit_scale(unit) -> float | None:
    """Å per `unit`, or None when `unit` is not a length unit."""
    if unit is None:
        return None
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8", "replace")
    u = str(unit).strip()
    u = re.sub(r"\s*/\s*(px|pix|pixel)s?$", "", u, flags=re.IGNORECASE)
    u = u.replace("\\u00B5", "µ").replace("\\u00b5", "µ").replace("μ", "µ").replace("Å", "Å")
    u = u.replace("_", "").strip().lower()  # Berkeley EMD writes "n_m"
    return _ANGSTROM_PER_UNIT.get(u)


def _resolve_pixel_size(raw: _Raw, name, override, default, notes):
    file_px = None
    problem = raw.calibration_problem
    if raw.calibration is not None:
        sizes = []
        for value, unit in raw.calibration:
            scale = _unit_scale(unit)
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = float("nan")
            if scale is None:
                u = str(unit).strip()
                if u.lower() in _NO_UNIT:
                    problem = "the file's calibration is in pixels"
                elif "/" in u or "^-1" in u or "-1" in u:
                    problem = f"the calibration unit {u!r} is reciprocal (a diffraction pattern?)"
                else:
                    problem = f"the calibration unit {u!r} is not a length unit"
                sizes = None
                break
            sizes.append(value * scale)
        if sizes is not None:
            y_px, x_px = sizes
            if not (math.isfinite(x_px) and math.isfinite(y_px)):
                problem = f"the file's pixel size is not a number ({raw.calibration})"
            else:
                file_px = 0.5 * (x_px + y_px)
                if x_px > 0 and y_px > 0 and abs(x_px - y_px) > 0.01 * max(x_px, y_px):
                    notes.append(
                        f"{name}: non-square pixels (x {x_px:.5g} Å, y {y_px:.5g} Å); using their mean "
                        f"{file_px:.5g} Å/px"
                    )
    if override is not None:
        return float(override), "override", file_px, "pixel_size_angstrom argument"
    if file_px is not None:
        if not (file_px > 0 and MIN_PIXEL_SIZE_ANGSTROM <= file_px <= MAX_PIXEL_SIZE_ANGSTROM):
            raise GombnetError(
                f"{name}: the file's pixel size {file_px:.6g} Å/px ({raw.calibration_detail}) is outside the "
                f"plausible range {MIN_PIXEL_SIZE_ANGSTROM:g}–{MAX_PIXEL_SIZE_ANGSTROM:g} Å/px; "
                "pass pixel_size_angstrom= to set it"
            )
        return float(file_px), "file", float(file_px), raw.calibration_detail
    notes.append(
        f"{name}: no usable pixel-size calibration ({problem}); assuming {float(default):g} Å/px, "
        "pass pixel_size_angstrom= to set it"
    )
    return float(default), "assumed", None, problem


# --------------------------------------------------------------------------------------------
# format readers
# --------------------------------------------------------------------------------------------


def _read_emd(path: Path) -> _Raw:
    import h5py

    if not h5py.is_hdf5(path):
        raise GombnetError(f"{path}: not an HDF5 file, so not an EMD file (corrupt or truncated?)")
    with h5py.File(path, "r") as f:
        if "Data" in f and isinstance(f["Data"], h5py.Group) and "Image" in f["Data"]:
            return _read_velox(path, f)
        velox_other = "Data" in f and isinstance(f["Data"], h5py.Group)
    if velox_other:
        raise GombnetError(f"{path}: Velox EMD file without an image (Data/Image is missing; spectra only?)")
    return _read_berkeley(path)


def _velox_json(group) -> dict:
    if "Metadata" not in group:
        return {}
    md = np.asarray(group["Metadata"][:, 0] if group["Metadata"].ndim == 2 else group["Metadata"][:])
    text = md.astype(np.uint8).tobytes().split(b"\0", 1)[0].decode("utf-8", "ignore")
    try:
        out = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}


def _read_velox(path: Path, f) -> _Raw:
    images = f["Data/Image"]
    found = []
    for key in images:
        group = images[key]
        if "Data" not in group:
            continue
        meta = _velox_json(group)
        result = meta.get("BinaryResult")
        detector = str(result.get("Detector", "")) if isinstance(result, dict) else ""
        found.append((key, group, meta, detector, tuple(group["Data"].shape)))
    if not found:
        raise GombnetError(f"{path}: Velox EMD file holds no image data under Data/Image")
    notes = []
    chosen = next((item for item in found if "HAADF" in item[3].upper()), None)
    if chosen is None:
        chosen = found[0]
        if len(found) > 1:
            notes.append(
                f"{path}: {len(found)} images and none from a HAADF detector; read the one from "
                f"{chosen[3] or 'an unnamed detector'} ({chosen[0]})"
            )
    key, group, meta, detector, shape = chosen
    data = np.asarray(group["Data"][()])

    raw = _Raw(data=data, fmt="velox-emd", frame_axis=2 if data.ndim == 3 else None, notes=notes)
    result = meta.get("BinaryResult")
    result = result if isinstance(result, dict) else {}
    px = result.get("PixelSize")
    if isinstance(px, dict) and "width" in px and "height" in px:
        raw.calibration = (
            (px["height"], result.get("PixelUnitY", "")),
            (px["width"], result.get("PixelUnitX", "")),
        )
        raw.calibration_detail = "Velox metadata BinaryResult.PixelSize"
    elif not meta:
        raw.calibration_problem = "the Velox metadata is missing or unreadable"
    try:
        raw.microscope = _velox_microscope(meta, detector)
    except (AttributeError, TypeError, ValueError, OverflowError, OSError):  # odd metadata is not fatal
        raw.microscope = {"detector": detector} if detector else {}
    raw.extra = {
        "dataset": f"Data/Image/{key}",
        "datasets": [{"path": f"Data/Image/{k}", "detector": d, "shape": list(s)} for k, _, _, d, s in found],
        "original_metadata": meta,
    }
    return raw


def _velox_microscope(meta: dict, detector: str) -> dict:
    out: dict[str, Any] = {}
    optics = meta.get("Optics", {})
    instrument = meta.get("Instrument", {})
    scan = meta.get("Scan", {})
    if detector:
        out["detector"] = detector
    volts = _float(optics.get("AccelerationVoltage"))
    if volts:
        out["voltage_kV"] = volts / 1e3
    model = " ".join(str(instrument.get(k, "")) for k in ("Manufacturer", "InstrumentModel")).strip()
    if model:
        out["instrument"] = model
    conv = _float(optics.get("BeamConvergence"))
    if conv:
        out["convergence_semiangle_mrad"] = conv * 1e3
    camera = _float(optics.get("CameraLength"))
    if camera:
        out["camera_length_m"] = camera
    dwell = _float(scan.get("DwellTime"))
    if dwell:
        out["dwell_time_s"] = dwell
    rot = _float(scan.get("ScanRotation"))
    if rot is not None:
        out["scan_rotation_deg"] = math.degrees(rot)
    for det in meta.get("Detectors", {}).values():
        if isinstance(det, dict) and det.get("DetectorName") == detector:
            rng = det.get("CollectionAngleRange", {})
            lo, hi = _float(rng.get("begin")), _float(rng.get("end"))
            if lo is not None and hi:
                out["collection_angles_mrad"] = [lo * 1e3, hi * 1e3]
    stamp = _float(meta.get("Acquisition", {}).get("AcquisitionStartDatetime", {}).get("DateTime"))
    if stamp:
        out["acquisition_time"] = datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).isoformat()
    return out


def _read_berkeley(path: Path) -> _Raw:
    from ncempy.io import emd

    with emd.fileEMD(path, readonly=True) as f:
        chosen = None
        for group in f.list_emds:
            if group["data"].ndim >= 2:
                chosen = group
                break
        if chosen is None:
            raise GombnetError(f"{path}: Berkeley EMD file holds no 2-D or 3-D dataset")
        data, dims = f.get_emdgroup(chosen)
        group_name = chosen.name
        try:
            attrs = f.getMetadata(chosen)
        except Exception:  # metadata is optional
            attrs = {}
        names = [g.name for g in f.list_emds]
    raw = _Raw(data=np.asarray(data), fmt="berkeley-emd")
    spatial = [i for i, d in enumerate(dims) if _unit_scale(d[2]) is not None]
    if data.ndim == 3:
        others = [i for i in range(3) if i not in spatial]
        raw.frame_axis = others[0] if len(others) == 1 else 0
    image_axes = [i for i in range(data.ndim) if i != raw.frame_axis][-2:]
    cal = []
    for i in image_axes:
        vec, _, unit = dims[i]
        vec = np.asarray(vec, dtype=np.float64)
        cal.append((vec[1] - vec[0] if vec.size > 1 else float("nan"), unit))
    raw.calibration = (cal[0], cal[1])
    raw.calibration_detail = f"Berkeley EMD dim vectors of {group_name}"
    raw.extra = {"dataset": group_name, "datasets": names, "original_metadata": dict(attrs)}
    volts = _find_number(attrs, ("high tension", "voltage", "acceleration voltage", "ht"))
    if volts:
        raw.microscope["voltage_kV"] = volts / 1e3 if volts > 1000 else volts
    return raw


def _read_dm(path: Path) -> _Raw:
    from ncempy.io import dm

    # on_memory=False: ncempy's mmap cannot be closed after a parse error (BufferError in __del__)
    with dm.fileDM(path, on_memory=False) as f:
        n_images = f.numObjects - 1 if f.numObjects > 1 else f.numObjects
        if n_images < 1:
            raise GombnetError(f"{path}: DM file holds no image")
        dataset = f.getDataset(0)
        try:
            meta = f.getMetadata(0)
        except Exception:  # metadata is optional
            meta = {}
        index = 0 if f.numObjects == 1 else 1
        dm_type = int(f.dataType[index])
    data = np.asarray(dataset["data"])
    fmt = path.suffix.lower()[1:]
    raw = _Raw(data=data, fmt=fmt)
    if dm_type == 23 and data.dtype.itemsize == 4:  # packed RGBA
        data = data.view(np.uint8).reshape(data.shape + (4,))[..., [2, 1, 0, 3]]  # stored BGRA
        raw.data, raw.rgb_axis = data, data.ndim - 1
    if raw.data.ndim - (raw.rgb_axis is not None) == 3:
        raw.frame_axis = 0
    sizes, units = list(dataset.get("pixelSize", [])), list(dataset.get("pixelUnit", []))
    if len(sizes) >= 2 and len(units) >= 2:
        raw.calibration = ((sizes[-2], units[-2]), (sizes[-1], units[-1]))
        raw.calibration_detail = "DM image calibration"
    mic = {}
    volts = _float(meta.get("Microscope Info Voltage"))
    if volts:
        mic["voltage_kV"] = volts / 1e3
    for key, out in (
        ("Microscope Info Name", "instrument"),
        ("DataBar Device Name", "detector"),
        ("Microscope Info Illumination Mode", "illumination_mode"),
        ("Microscope Info Indicated Magnification", "magnification"),
        ("DataBar Acquisition Date", "acquisition_date"),
        ("DataBar Acquisition Time", "acquisition_time"),
        ("Microscope Info STEM Camera Length", "camera_length"),
    ):
        if key in meta and meta[key] not in ("", None, "Unknown"):
            mic[out] = meta[key]
    raw.microscope = mic
    raw.extra = {"images_in_file": int(n_images), "original_metadata": meta}
    if n_images > 1:
        raw.notes.append(f"{path}: DM file holds {n_images} images; read the first")
    return raw


def _read_ser(path: Path) -> _Raw:
    from ncempy.io import ser

    with ser.fileSER(path) as f:
        head = f.head
        if head["DataTypeID"] != 0x4122:
            raise GombnetError(f"{path}: SER file holds spectra, not images")
        n = int(head["ValidNumberElements"])
        if n < 1:
            raise GombnetError(f"{path}: SER file holds no image")
        frames, cal = [], None
        for i in range(n):
            data, meta = f.getDataset(i)
            frames.append(data)
            if cal is None:
                cal = meta["Calibration"]
        emi = f._emi or {}
    if len({fr.shape for fr in frames}) != 1:
        raise GombnetError(f"{path}: SER images have different shapes")
    data = np.stack(frames) if n > 1 else frames[0]
    raw = _Raw(data=data, fmt="ser", frame_axis=0 if n > 1 else None)
    # TIA calibrations are SI (metres); element 0 is x, element 1 is y
    raw.calibration = ((cal[1]["CalibrationDelta"], "m"), (cal[0]["CalibrationDelta"], "m"))
    raw.calibration_detail = "SER element calibration [m]"
    volts = _find_number(emi, ("high tension", "voltage"))
    if volts:
        raw.microscope["voltage_kV"] = volts / 1e3 if volts > 1000 else volts
    raw.extra = {"original_metadata": emi}
    return raw


def _read_mrc(path: Path) -> _Raw:
    from ncempy.io import mrc

    with mrc.fileMRC(path) as f:
        out = f.getDataset()
        if "data" not in out:
            raise GombnetError(f"{path}: MRC data could not be read")
        data = np.asarray(out["data"])
        grid = np.asarray(f.gridSize, dtype=np.float64)  # (z, y, x)
        cell = np.asarray(f.volumeSize, dtype=np.float64)
        fei = dict(getattr(f, "FEIinfo", {}) or {})
        n_expected = int(np.prod(np.asarray(f.dataSize, dtype=np.int64)))
    if data.size != n_expected:
        raise GombnetError(f"{path}: MRC file is truncated")
    raw = _Raw(data=data, fmt="mrc", frame_axis=0 if data.ndim == 3 else None)
    fei_px = _float(fei.get("pixel_size"))
    # ncempy reads the old FEI extended-header layout; newer (FEI1/FEI2) headers give junk
    # there, so only a plausible value is trusted and the cell size is the fallback
    if fei_px and MIN_PIXEL_SIZE_ANGSTROM <= fei_px * 1e10 <= MAX_PIXEL_SIZE_ANGSTROM:
        raw.calibration = ((fei_px, "m"), (fei_px, "m"))
        raw.calibration_detail = "MRC FEI extended header pixel_size [m]"
    elif cell[1] > 0 and cell[2] > 0 and grid[1] > 0 and grid[2] > 0:
        y_px, x_px = cell[1] / grid[1], cell[2] / grid[2]
        if y_px == 1.0 and x_px == 1.0:
            raw.calibration_problem = (
                "the MRC header pixel size is exactly 1 Å, the usual 'not calibrated' placeholder"
            )
        else:
            raw.calibration = ((y_px, "A"), (x_px, "A"))
            raw.calibration_detail = "MRC cell dimensions / grid size [Å]"
    else:
        raw.calibration_problem = "the MRC header cell size is 0"
    volts = _float(fei.get("voltage"))
    if volts:
        raw.microscope["voltage_kV"] = volts / 1e3 if volts > 1000 else volts
    if fei:
        raw.extra = {"original_metadata": fei}
    return raw


def _read_tiff(path: Path) -> _Raw:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        if not tf.series:
            raise GombnetError(f"{path}: TIFF file holds no image")
        series = tf.series[0]
        data = np.asarray(series.asarray())
        axes = series.axes
        page = tf.pages.first if hasattr(tf.pages, "first") else tf.pages[0]
        calibration, detail, problem, mic, original = _tiff_calibration(tf, page)
    if len(axes) != data.ndim:  # defensive: tifffile normally keeps them in step
        axes = "Q" * (data.ndim - 2) + "YX"
    raw = _Raw(data=data, fmt="tiff")
    if "S" in axes and data.shape[axes.index("S")] in (1, 2, 3, 4):
        raw.rgb_axis = axes.index("S")
    rest = [i for i, a in enumerate(axes) if a not in "YXS" or (a == "S" and raw.rgb_axis is None)]
    rest = [i for i in rest if data.shape[i] > 1] or rest
    if len(rest) == 1:
        raw.frame_axis = rest[0]
    raw.calibration, raw.calibration_detail, raw.microscope = calibration, detail, mic
    if problem:
        raw.calibration_problem = problem
    raw.extra = {"tiff_axes": axes, "original_metadata": original}
    return raw


def _tiff_calibration(tf, page):
    """Return (calibration, detail, problem, microscope, original metadata) for a TIFF."""
    original: dict[str, Any] = {}
    mic: dict[str, Any] = {}
    problem = None

    fei = _safe_attr(tf, "fei_metadata")
    if fei:
        original["fei"] = fei
        for section in ("EScan", "Scan"):
            sec = fei.get(section) or {}
            pw, ph = _float(sec.get("PixelWidth")), _float(sec.get("PixelHeight"))
            if pw:
                for beam in ("EBeam", "Beam"):
                    hv = _float((fei.get(beam) or {}).get("HV"))
                    if hv:
                        mic["voltage_kV"] = hv / 1e3
                        break
                det = (fei.get("Detectors") or {}).get("Name")
                if det:
                    mic["detector"] = det
                return ((ph or pw, "m"), (pw, "m")), f"FEI TIFF tag {section}.PixelWidth [m]", None, mic, original

    if tf.is_ome:
        xml = _safe_attr(tf, "ome_metadata")
        cal = _ome_calibration(xml) if xml else None
        if cal is not None:
            return cal, "OME-XML PhysicalSizeX/Y", None, mic, original

    description = page.description or ""
    if description.lstrip().startswith("{"):
        try:
            desc = json.loads(description)
        except json.JSONDecodeError:
            desc = None
        if isinstance(desc, dict):
            cals = desc.get("spatial_calibrations")
            if isinstance(cals, list) and len(cals) >= 2:
                try:
                    (cy, cx) = cals[-2], cals[-1]
                    original["nion"] = {"spatial_calibrations": cals}
                    volts = _find_number(desc, ("high_tension", "high_tension_v"))
                    if volts:
                        mic["voltage_kV"] = volts / 1e3 if volts > 1000 else volts
                    cal = ((cy["scale"], cy.get("units", "")), (cx["scale"], cx.get("units", "")))
                    return cal, "Nion Swift spatial_calibrations", None, mic, original
                except (KeyError, TypeError):
                    pass

    tags = page.tags
    xres = tags["XResolution"].value if "XResolution" in tags else None
    yres = tags["YResolution"].value if "YResolution" in tags else xres
    ij = _safe_attr(tf, "imagej_metadata") if tf.is_imagej else None
    if ij is not None:
        original["imagej"] = {k: v for k, v in ij.items() if isinstance(v, (str, int, float))}
        unit = ij.get("unit")
        if unit is None or str(unit).strip().lower() in _NO_UNIT:
            return None, "", "the ImageJ calibration is in pixels", mic, original
        if xres is None or _ratio(xres) <= 0:
            return None, "", "the ImageJ resolution tags are missing", mic, original
        cal = ((1.0 / _ratio(yres), unit), (1.0 / _ratio(xres), unit))
        return cal, f"ImageJ calibration (XResolution pixels per {unit})", None, mic, original

    if xres is not None and "ResolutionUnit" in tags:
        unit_code = int(tags["ResolutionUnit"].value)
        unit = {2: "inch", 3: "cm"}.get(unit_code)
        if unit is not None and _ratio(xres) > 0:
            per = 2.54e8 if unit == "inch" else 1e8  # Å per resolution unit
            x_px, y_px = per / _ratio(xres), per / _ratio(yres)
            if MIN_PIXEL_SIZE_ANGSTROM <= x_px <= MAX_PIXEL_SIZE_ANGSTROM:
                return ((y_px, "A"), (x_px, "A")), f"TIFF resolution tags (pixels per {unit})", None, mic, original
            problem = f"the TIFF resolution tags ({_ratio(xres):g} pixels per {unit}) are a print resolution"
    return None, "", problem or "the TIFF file has no pixel-size calibration", mic, original


def _ome_calibration(xml: str):
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.endswith("Pixels") and "PhysicalSizeX" in el.attrib:
            x = el.attrib["PhysicalSizeX"]
            y = el.attrib.get("PhysicalSizeY", x)
            ux = el.attrib.get("PhysicalSizeXUnit", "µm")
            uy = el.attrib.get("PhysicalSizeYUnit", ux)
            return ((y, uy), (x, ux))
    return None


def _np_load(path: Path):
    """np.load that refuses pickles with a clear message."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise GombnetError(f"{path}: holds Python objects (pickles), which gombnet never loads") from exc
        raise


def _read_npy(path: Path) -> _Raw:
    data = _np_load(path)
    raw = _generic_array(np.asarray(data), "npy", path)
    raw.calibration_problem = "NPY files carry no calibration"
    return raw


def _generic_array(data: np.ndarray, fmt: str, path: Path) -> _Raw:
    raw = _Raw(data=data, fmt=fmt)
    if data.ndim == 3 and data.dtype == np.uint8 and data.shape[-1] in (3, 4) and min(data.shape[:2]) > 4:
        raw.rgb_axis = 2
    return raw


_NPZ_IMAGE_KEYS = ("im_array", "image", "img", "data", "array", "stack", "frames", "arr_0")
_NPZ_PIXEL_KEYS = (
    ("pixel_size_angstrom", "A"), ("pixel_size_a", "A"), ("pixel_size_nm", "nm"), ("pixel_size_pm", "pm"),
    ("pixel_size_m", "m"), ("pixel_size", None), ("pixelsize", None), ("pixel_size_x", None),
)
_NPZ_UNIT_KEYS = ("pixel_unit", "pixel_size_unit", "pixel_units", "unit", "units")


def _read_npz(path: Path) -> _Raw:
    archive = _np_load(path)
    with archive as z:
        arrays = {}
        for key in z.files:
            try:
                arrays[key] = z[key]
            except ValueError as exc:  # object arrays need pickles; skip them
                if "pickle" not in str(exc).lower():
                    raise
    if not arrays:
        raise GombnetError(f"{path}: the .npz archive holds no readable arrays")
    lower = {k.lower(): k for k in arrays}
    notes = []

    def is_image(a):
        return a.ndim in (2, 3) and a.dtype.kind in "biuf"

    key = next((lower[k] for k in _NPZ_IMAGE_KEYS if k in lower and is_image(arrays[lower[k]])), None)
    if key is None:
        candidates = [k for k, a in arrays.items() if is_image(a)]
        if not candidates:
            shapes = ", ".join(f"{k} {arrays[k].shape}" for k in arrays)
            raise GombnetError(f"{path}: no 2-D or 3-D numeric array in the .npz archive ({shapes})")
        key = max(candidates, key=lambda k: arrays[k].size)
        if len(candidates) > 1:
            notes.append(f"{path}: several image-like arrays ({', '.join(candidates)}); read the largest, {key!r}")
    raw = _generic_array(np.asarray(arrays[key]), "npz", path)
    raw.notes = notes

    unit_key = next((lower[k] for k in _NPZ_UNIT_KEYS if k in lower), None)
    unit_hint = _as_text(arrays[unit_key]) if unit_key else None
    for pkey, unit in _NPZ_PIXEL_KEYS:
        if pkey not in lower:
            continue
        orig_key = lower[pkey]
        cal = _npz_pixel_size(arrays[orig_key], unit or unit_hint)
        if cal is None:
            raw.calibration_problem = f"the {orig_key!r} entry {arrays[orig_key]!r} is not understood"
            break
        (vy, vx), unit_used, how = cal
        if unit_used is None:  # bare number: decide by magnitude
            if max(abs(vy), abs(vx)) < 1e-6:
                unit_used, how = "m", "bare number < 1e-6 read as metres"
            else:
                unit_used, how = "A", "bare number read as Å"
                notes.append(
                    f"{path}: {orig_key!r} = {arrays[orig_key]!r} has no unit; read as Å "
                    "(name the key pixel_size_angstrom / pixel_size_nm or add a 'pixel_unit' entry to be explicit)"
                )
        raw.calibration = ((vy, unit_used), (vx, unit_used))
        raw.calibration_detail = f"npz entry {orig_key!r} ({how})"
        break
    raw.extra = {
        "npz_key": key,
        "npz_keys": {k: list(a.shape) for k, a in arrays.items()},
        "original_metadata": {k: _as_text(a) for k, a in arrays.items() if a.size == 1 and k != key},
    }
    return raw


def _npz_pixel_size(value: np.ndarray, unit_hint):
    """((y, x), unit or None, how) from an npz pixel-size entry, or None."""
    value = np.asarray(value)
    if value.dtype.kind in "US":
        text = _as_text(value)
        m = re.fullmatch(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d\s].*)?", text or "")
        if not m:
            return None
        number, unit = float(m.group(1)), (m.group(2) or "").strip()
        if unit:
            return (number, number), unit, f"string with unit {unit!r}"
        return (number, number), unit_hint, "string" + (f", unit from entry {unit_hint!r}" if unit_hint else "")
    if value.dtype.kind not in "iuf" or value.size not in (1, 2):
        return None
    flat = value.astype(np.float64).ravel()
    vy, vx = (flat[0], flat[0]) if flat.size == 1 else (flat[0], flat[1])
    return (vy, vx), unit_hint, "number" + (f", unit from entry {unit_hint!r}" if unit_hint else "")


def _read_pil(path: Path) -> _Raw:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode == "CMYK":
            im = im.convert("RGB")
        elif mode in ("I;16B", "I;16L", "I;16N"):
            im = im.convert("I")
        data = np.asarray(im)
    fmt = "png" if path.suffix.lower() == ".png" else "jpeg"
    raw = _Raw(data=data, fmt=fmt, original_dtype=str(data.dtype), original_shape=tuple(data.shape))
    raw.extra = {"pil_mode": mode}
    if data.ndim == 3:
        raw.rgb_axis = 2
    raw.calibration_problem = f"{fmt.upper()} files carry no calibration"
    return raw


_READERS = {
    ".emd": _read_emd,
    ".dm3": _read_dm,
    ".dm4": _read_dm,
    ".ser": _read_ser,
    ".tif": _read_tiff,
    ".tiff": _read_tiff,
    ".mrc": _read_mrc,
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".png": _read_pil,
    ".jpg": _read_pil,
    ".jpeg": _read_pil,
}


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _float(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _ratio(value) -> float:
    if isinstance(value, tuple) and len(value) == 2:
        return float(value[0]) / float(value[1]) if value[1] else 0.0
    return float(value)


def _as_text(value) -> str | None:
    value = np.asarray(value)
    if value.size != 1:
        return None
    item = value.reshape(()).item()
    if isinstance(item, bytes):
        item = item.decode("utf-8", "replace")
    return str(item)


def _safe_attr(obj, name):
    try:
        return getattr(obj, name)
    except Exception:  # tifffile metadata parsers may fail on odd files; metadata is optional
        return None


def _find_number(tree, names: tuple[str, ...]) -> float | None:
    """First numeric value whose key (lower-case) equals or contains one of `names`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                k = str(key).lower()
                if any(k == n or (len(n) > 3 and n in k) for n in names):
                    number = _float(value)
                    if number:
                        return number
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return None


def _jsonable(obj, _depth: int = 0):
    """Plain JSON types only: numpy scalars to Python, small arrays to lists, NaN to None."""
    if _depth > 20:
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, _depth + 1) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.size <= 64:
            return _jsonable(obj.tolist(), _depth + 1)
        return f"<array shape={list(obj.shape)} dtype={obj.dtype}>"
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, complex):
        return str(obj)
    return str(obj)


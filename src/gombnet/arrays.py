"""Checks shared by every function that takes an image or a map from the user."""

from __future__ import annotations

import numpy as np

from .errors import GombnetError


def as_real_array(values, name: str, ndim: tuple[int, ...] = (2,), shape_hint: str = "(H, W)") -> np.ndarray:
    """``values`` as a finite float32 array with one of the ``ndim`` dimensions.

    Raises
    ------
    GombnetError
        Not an array of real numbers, wrong number of dimensions, empty, NaN or inf.
    """
    try:
        arr = np.asarray(values)
    except Exception as exc:  # e.g. ragged lists
        raise GombnetError(f"{name} must be an array of numbers ({exc})") from None
    if arr.ndim not in ndim:
        raise GombnetError(f"{name} must be {shape_hint}, got shape {arr.shape}")
    if arr.size == 0:
        raise GombnetError(f"{name} is empty (shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise GombnetError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise GombnetError(f"{name} contains NaN or infinite values")
    return arr

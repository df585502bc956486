"""Strict JSON for result files: NaN/inf become null, numpy types become Python types.

Python's json writes NaN, which other tools (JavaScript, jq) reject; results written by
gombnet are read by such tools, so they are written strictly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def json_safe(obj):
    """A copy of ``obj`` with NaN/inf replaced by None and numpy objects by Python ones."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj, *, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (see :func:`json_safe`)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)

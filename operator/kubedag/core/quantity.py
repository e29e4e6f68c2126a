"""Kubernetes resource quantities ("500m", "2Gi", "1.5") as numbers, for sums and comparisons
(the operator's resource metrics, the SDK's performance estimate and node-fit check)."""

from __future__ import annotations

import re
from typing import Any

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIXES = {
    "": 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "P": 1e15, "E": 1e18, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40,
    "Pi": 2.0**50, "Ei": 2.0**60,
}


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "2Gi", "1.5") as a number; 0 when unreadable."""
    match = _QUANTITY.match(str(value or "").strip())
    if not match or match.group(2) not in _SUFFIXES:
        return 0.0
    try:
        return float(match.group(1)) * _SUFFIXES[match.group(2)]
    except ValueError:
        return 0.0

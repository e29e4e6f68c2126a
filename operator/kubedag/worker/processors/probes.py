"""Probes: processors that exercise a node rather than process data, for capacity checks (does
a stage of this size fit, is the usage it reports right?) and for the real-node tests."""

from __future__ import annotations

import time
from typing import Any

from kubedag.worker.context import Context
from kubedag.worker.errors import PermanentError

MIB = 2**20
PAGE = 4096


def allocate(context: Context) -> dict[str, Any]:
    """Allocate and touch ``params.mebibytes`` MiB (every page, so it is resident), hold it for
    ``params.holdSeconds`` and report what was allocated: the worker's usage report should show
    a peak RSS of about that much."""
    mebibytes = context.params.get("mebibytes", 100)
    hold = context.params.get("holdSeconds", 1.0)
    if isinstance(mebibytes, bool) or not isinstance(mebibytes, int) or mebibytes < 0:
        raise PermanentError(f"param mebibytes must be a non-negative integer, got {mebibytes!r}")
    if isinstance(hold, bool) or not isinstance(hold, int | float) or hold < 0:
        raise PermanentError(f"param holdSeconds must be a non-negative number, got {hold!r}")
    block = bytearray(mebibytes * MIB)
    for offset in range(0, len(block), PAGE):
        block[offset] = 1
    context.report_progress(0.5, f"holding {mebibytes} MiB")
    time.sleep(hold)
    touched = sum(block[::PAGE])
    del block
    return {"allocatedBytes": mebibytes * MIB, "pagesTouched": touched}

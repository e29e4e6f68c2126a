"""Give freed memory back to the OS now and then.

The operator parses large JSON bodies (a 1,000-stage run is ~300 KB a watch event) on many
threads; glibc keeps what Python frees in per-thread arenas, so RSS only ever grows. Trimming
every few seconds keeps it near what is actually in use. A no-op where glibc is absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging

log = logging.getLogger("kubedag.memory")
TRIM_INTERVAL_SECONDS = 10.0
_M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h
ARENAS = 2


def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def limit_arenas(arenas: int = ARENAS) -> None:
    """Cap glibc's malloc arenas (what MALLOC_ARENA_MAX does), before the API threads start:
    by default each thread that allocates gets its own, up to 8 per core."""
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).mallopt(_M_ARENA_MAX, arenas)


async def trim_periodically(interval: float = TRIM_INTERVAL_SECONDS) -> None:
    trim = _malloc_trim()
    if trim is None:
        log.info("malloc_trim unavailable; memory is not trimmed")
        return
    while True:
        await asyncio.sleep(interval)
        trim(0)

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
import gc
import logging

log = logging.getLogger("kubedag.memory")
TRIM_INTERVAL_SECONDS = 10.0
_M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h
ARENAS = 2
# Allocations (less deallocations) of container objects between two young collections;
# Python's default is 700.
YOUNG_COLLECTION_THRESHOLD = 20_000


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


def collect_garbage_less_often() -> None:
    """Run Python's cyclic garbage collector about 30 times less often than by default.

    Every watch event is decoded into a few hundred new dicts and lists, so with the default
    threshold (700) a young collection ran every few events, and every tenth of those swept
    the middle generation, every hundredth the whole heap (the operator's runs, indexes and
    kopf's state): py-spy charged a fifth of the operator's CPU to the line that decodes
    events, where those collections were triggered. The garbage is mostly kopf's: each event's
    Body and Patch wrappers refer to themselves and hold the decoded body until a collection
    (with none, RSS grew to 439 MiB over 40 runs). A young collection every 20,000 allocations,
    a few dozen events, still frees them young: peak RSS stayed at 140 MiB. Since Jobs and pods
    bypass kopf's handlers (kubedag.shell.childwatch) few such wrappers are left: a callback
    counted 16 collections over a whole 40-run bench.
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)

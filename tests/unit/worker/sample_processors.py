"""Processors the CLI tests run inside a real ``kubedag-worker`` process, one per behaviour."""

from __future__ import annotations

import errno
import time
from typing import Any

from kubedag.worker import Context, PermanentError, RetryableError


def echo(context: Context) -> dict[str, Any]:
    return {
        "params": dict(context.params),
        "inputs": dict(context.inputs),
        "items": list(context.items),
        "run": context.run,
        "stage": context.stage,
        "attempt": context.attempt,
        "workspace": str(context.workspace),
    }


def nothing(context: Context) -> None:
    return None


def burn(context: Context) -> dict[str, int]:
    """0.3 s of CPU while holding 50 MB, so the usage figures have something to show."""
    hoard = bytearray(50 * 1024 * 1024)
    for offset in range(0, len(hoard), 4096):  # touch every page so it is resident
        hoard[offset] = 1
    deadline = time.process_time() + 0.3
    spins = 0
    while time.process_time() < deadline:
        spins += 1
    return {"size": len(hoard)}


def progress_many(context: Context) -> dict[str, int]:
    """Many updates in quick succession: the reporter must coalesce them."""
    count = int(context.params.get("updates", 40))
    for step in range(count):
        context.report_progress(step / count, f"step {step}")
        time.sleep(float(context.params.get("pause", 0.05)))
    return {"updates": count}


def sleep_forever(context: Context) -> None:
    context.logger.info("sleeping")
    time.sleep(60)


def huge(context: Context) -> dict[str, str]:
    return {"blob": "x" * 5000}


def not_a_mapping(context: Context) -> list[int]:
    return [1, 2]


def not_json(context: Context) -> dict[str, object]:
    return {"thing": object()}


def retryable(context: Context) -> None:
    raise RetryableError("upstream is busy")


def timeout(context: Context) -> None:
    raise TimeoutError("the service did not answer in 5 s")


def refused(context: Context) -> None:
    raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")


def unreachable(context: Context) -> None:
    raise OSError(errno.EHOSTUNREACH, "No route to host")


def missing_file(context: Context) -> None:
    raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/nope")


def permanent(context: Context) -> None:
    raise PermanentError("document 7 is corrupt")


def value_error(context: Context) -> None:
    raise ValueError("page count must be positive")


def type_error(context: Context) -> None:
    raise TypeError("expected str")


def key_error(context: Context) -> None:
    raise KeyError("title")


def runtime_error(context: Context) -> None:
    raise RuntimeError("something odd")


def long_error(context: Context) -> None:
    raise ValueError("é" * 5000)


NOT_CALLABLE = 42


def stubborn(context: Context) -> None:
    """Swallows every Exception, as careless code does; SIGTERM must still end it."""
    context.logger.info("sleeping")
    try:
        time.sleep(60)
    except Exception:
        time.sleep(60)

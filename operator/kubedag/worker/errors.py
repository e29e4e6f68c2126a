"""How a failure becomes an exit code: the only thing the operator's retry policy looks at.

A stage cannot tell the operator "retry me" any other way than through its exit code, so the
mapping lives in one place and errs towards retrying what might succeed next time (network,
timeouts) and failing fast on what never will (bad input, a misconfigured stage).
"""

from __future__ import annotations

import errno
import sys

from kubedag import contract

MAX_ERROR_BYTES = 1024  # the error shares the termination message with the usage figures

# errno values that mean "the network or a peer was unavailable", not "the input is wrong".
_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ENETRESET,
        errno.EPIPE,
        errno.EAGAIN,
    }
)


class WorkerError(Exception):
    """Base of the errors a processor raises on purpose to choose its exit code."""

    exit_code: int = contract.EXIT_ERROR


class RetryableError(WorkerError):
    """A transient failure: another attempt may succeed (a flaky service, a lock, a quota)."""

    exit_code = contract.EXIT_RETRYABLE


class PermanentError(WorkerError):
    """The input or the stage is wrong: retrying the same attempt would fail the same way."""

    exit_code = contract.EXIT_PERMANENT


class UsageError(WorkerError):
    """The stage is misconfigured (processor reference, malformed env): fix the Pipeline."""

    exit_code = contract.EXIT_USAGE


class OutputTooLargeError(WorkerError):
    """The outputs do not fit the termination message; they belong in the workspace."""

    exit_code = contract.EXIT_OUTPUT_TOO_LARGE


def _is_network_error(error: BaseException) -> bool:
    # urllib.error costs the worker ~1 MiB (tempfile, shutil, bz2, lzma...): only a processor
    # that already imported it can raise a URLError, so look it up rather than import it.
    urllib_error = sys.modules.get("urllib.error")
    if (urllib_error is not None and isinstance(error, urllib_error.URLError)
            and isinstance(error.reason, BaseException)):
        return _is_network_error(error.reason)
    # socket.gaierror is an OSError whose errno is an EAI_* code: name resolution is transient.
    if type(error).__name__ == "gaierror":
        return True
    return isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS


def exit_code_for(error: BaseException) -> int:
    """The exit code that tells the operator whether an attempt failing this way is worth retrying.

    Order matters: ConnectionError and TimeoutError are OSErrors, and the explicit kubedag
    errors win over the built-in kinds they may also be.
    """
    if isinstance(error, WorkerError):
        return error.exit_code
    if isinstance(error, TimeoutError | ConnectionError) or _is_network_error(error):
        return contract.EXIT_RETRYABLE
    if isinstance(error, ValueError | TypeError | KeyError):
        return contract.EXIT_PERMANENT
    return contract.EXIT_ERROR


def shorten(text: str, limit: int = MAX_ERROR_BYTES) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes on a character boundary, marking the cut."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    marker = "…"
    keep = encoded[: limit - len(marker.encode())].decode(errors="ignore")
    return keep + marker


def describe(error: BaseException) -> str:
    """A one-line, bounded description for the termination message (the log has the traceback)."""
    message = str(error).strip()
    if isinstance(error, KeyError) and error.args:
        message = f"missing key {error.args[0]!r}"
    if isinstance(error, WorkerError) and message:
        return shorten(message)  # raised on purpose: the message was written to be read
    name = type(error).__name__
    return shorten(f"{name}: {message}" if message else name)

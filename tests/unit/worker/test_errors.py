"""Exceptions to exit codes, and error messages bounded for the termination message."""

from __future__ import annotations

import errno
import socket
import urllib.error

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubedag import contract
from kubedag.worker.errors import (
    PermanentError,
    RetryableError,
    UsageError,
    describe,
    exit_code_for,
    shorten,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RetryableError("x"), contract.EXIT_RETRYABLE),
        (TimeoutError(), contract.EXIT_RETRYABLE),
        (ConnectionResetError(), contract.EXIT_RETRYABLE),
        (OSError(errno.ENETUNREACH, "net"), contract.EXIT_RETRYABLE),
        (socket.gaierror(socket.EAI_AGAIN, "dns"), contract.EXIT_RETRYABLE),
        (urllib.error.URLError(OSError(errno.ECONNREFUSED, "refused")), contract.EXIT_RETRYABLE),
        (OSError(errno.ENOSPC, "disk full"), contract.EXIT_ERROR),
        (PermissionError(errno.EACCES, "denied"), contract.EXIT_ERROR),
        (PermanentError("x"), contract.EXIT_PERMANENT),
        (ValueError(), contract.EXIT_PERMANENT),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), contract.EXIT_PERMANENT),
        (KeyError("k"), contract.EXIT_PERMANENT),
        (TypeError(), contract.EXIT_PERMANENT),
        (UsageError("x"), contract.EXIT_USAGE),
        (RuntimeError(), contract.EXIT_ERROR),
        (MemoryError(), contract.EXIT_ERROR),
    ],
)
def test_exit_code_for(error: BaseException, code: int) -> None:
    assert exit_code_for(error) == code


def test_describe_names_builtin_errors_but_not_deliberate_ones() -> None:
    assert describe(ValueError("bad page")) == "ValueError: bad page"
    assert describe(PermanentError("bad page")) == "bad page"
    assert describe(RuntimeError()) == "RuntimeError"


@given(st.text(), st.integers(min_value=4, max_value=2000))
def test_shorten_fits_and_keeps_a_prefix(text: str, limit: int) -> None:
    short = shorten(text, limit)
    assert len(short.encode()) <= limit
    assert short == text or (short.endswith("…") and text.startswith(short[:-1]))

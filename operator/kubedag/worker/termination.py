"""The termination message: the one channel by which a finished pod hands results back.

The kubelet keeps at most ``contract.TERMINATION_MESSAGE_LIMIT`` bytes and silently truncates the
rest, which would leave the operator with unparseable JSON. So the message is checked here and an
oversized result is replaced by a short error that always fits, never cut mid-way.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubedag import contract
from kubedag.worker.errors import OutputTooLargeError, PermanentError, shorten

log = logging.getLogger(__name__)


def termination_path(override: str | None = None) -> Path:
    """Where to write: the flag, else the env (tests, custom containers), else the kubelet's."""
    return Path(
        override
        or os.environ.get(contract.ENV_TERMINATION_MESSAGE_PATH)
        or contract.TERMINATION_MESSAGE_PATH
    )


def encode(message: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: every byte counts against the limit."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def outputs_message(outputs: object, usage: Mapping[str, Any]) -> bytes:
    """The success message, or an error if the outputs are not a small JSON object.

    None means "no outputs" and is written as ``{}`` so the operator always sees an object.
    """
    if outputs is None:
        outputs = {}
    if not isinstance(outputs, Mapping):
        raise PermanentError(
            f"the processor returned {type(outputs).__name__}; expected a JSON object or None"
        )
    try:
        data = encode({"outputs": dict(outputs), "usage": dict(usage)})
    except (TypeError, ValueError) as error:
        raise PermanentError(f"the outputs are not JSON-serializable: {error}") from error
    if len(data) > contract.TERMINATION_MESSAGE_LIMIT:
        raise OutputTooLargeError(
            f"outputs take {len(data)} bytes as JSON but the termination message holds at most "
            f"{contract.TERMINATION_MESSAGE_LIMIT}; write large results to the workspace and "
            "return their path"
        )
    return data


def error_message(error: str, usage: Mapping[str, Any]) -> bytes:
    """The failure message; the error text is shortened until the whole object fits."""
    limit = contract.TERMINATION_MESSAGE_LIMIT
    data = encode({"error": error, "usage": dict(usage)})
    while len(data) > limit and error:  # only with absurd usage figures; keep the JSON valid
        error = shorten(error, max(0, len(error.encode()) - (len(data) - limit) - 8))
        data = encode({"error": error, "usage": dict(usage)})
    return data


def write(path: Path, data: bytes) -> None:
    """Write the message; a missing path (a local run) is logged, not fatal."""
    try:
        path.write_bytes(data)
    except OSError as error:
        log.warning("could not write the termination message to %s: %s", path, error)
    log.info("termination message: %s", data.decode())

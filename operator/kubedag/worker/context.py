"""What a processor function is given: its stage's inputs, read once from the pod's env.

The operator passes everything through env vars (see ``kubedag.contract``); parsing them here,
before the processor runs, turns a malformed stage into a usage error instead of a crash halfway
through the work. The context is frozen so a processor cannot mistake it for a place to put
results: results are the return value.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubedag import contract
from kubedag.worker.errors import UsageError

ProgressCallback = Callable[[float, str], None]


class Context:
    """The stage's view of its run. ``items`` is this pod's fan-out batch (empty without one).

    Frozen, compared, hashed and shown like a frozen dataclass (the callback aside), written out
    so the worker need not import dataclasses (and inspect, ast, dis: ~0.9 MiB of RSS that would
    count as the stage's).
    """

    __slots__ = ("_progress", "args", "attempt", "inputs", "items", "logger", "params", "run",
                 "stage", "workspace")
    # The constructor's order; `args` came last (with a default) so older callers still work.
    __match_args__ = ("params", "inputs", "items", "workspace", "run", "stage", "attempt",
                      "logger", "_progress", "args")
    # All but the callback: shown, compared, hashed.
    _FIELDS = ("params", "inputs", "items", "workspace", "run", "stage", "attempt", "logger",
               "args")

    params: Mapping[str, Any]
    inputs: Mapping[str, Any]
    items: tuple[Any, ...]
    workspace: Path
    run: str
    stage: str
    attempt: int
    logger: logging.Logger
    _progress: ProgressCallback
    # The stage's `args` after substitution, for a processor that takes command-line style
    # options (a command stage gets them as its argv instead).
    args: tuple[str, ...]

    def __init__(
        self,
        params: Mapping[str, Any],
        inputs: Mapping[str, Any],
        items: tuple[Any, ...],
        workspace: Path,
        run: str,
        stage: str,
        attempt: int,
        logger: logging.Logger,
        _progress: ProgressCallback,
        args: tuple[str, ...] = (),
    ) -> None:
        values = (params, inputs, items, workspace, run, stage, attempt, logger, _progress,
                  tuple(args))
        for name, value in zip(self.__match_args__, values, strict=True):
            object.__setattr__(self, name, value)

    if not TYPE_CHECKING:  # mypy would take a __setattr__ to allow any attribute

        def __setattr__(self, name: str, value: Any) -> None:
            raise AttributeError(f"cannot assign to field {name!r}: the context is frozen")

        def __delattr__(self, name: str) -> None:
            raise AttributeError(f"cannot delete field {name!r}: the context is frozen")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Context) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self) -> tuple[type[Context], tuple[Any, ...]]:
        """copy (and pickle, where the callback allows) make a new context from the fields."""
        return type(self), tuple(getattr(self, name) for name in self.__match_args__)

    def report_progress(self, fraction: float, message: str = "") -> None:
        """Publish how far along the stage is; returns at once, the API call happens elsewhere.

        Call it as often as you like: updates are coalesced and rate-limited.
        """
        if not 0.0 <= fraction <= 1.0:  # also rejects NaN
            raise ValueError(f"progress fraction must be within [0, 1], got {fraction!r}")
        self._progress(float(fraction), message)


def _json_env(env: Mapping[str, str], name: str, kind: type, default: Any) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise UsageError(f"{name} is not valid JSON: {error}") from error
    if not isinstance(value, kind):
        raise UsageError(f"{name} must be a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def _int_env(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise UsageError(f"{name} must be an integer, got {raw!r}") from error
    if value < minimum:
        raise UsageError(f"{name} must be at least {minimum}, got {value}")
    return value


def select_batch(items: list[Any], batch_size: int, index: int) -> tuple[Any, ...]:
    """The slice of a fan-out's items that completion ``index`` of an Indexed Job handles.

    An index past the end means the Job has more completions than batches: the stage and the
    Job disagree, which is a misconfiguration rather than an empty batch to shrug off.
    """
    start = index * batch_size
    if items and start >= len(items):
        raise UsageError(
            f"completion index {index} with batch size {batch_size} is past the "
            f"{len(items)} fan-out items"
        )
    return tuple(items[start : start + batch_size])


def context_from_env(
    env: Mapping[str, str], progress: ProgressCallback, logger: logging.Logger
) -> Context:
    """Build the context from the env a pod gets; raise UsageError on anything malformed."""
    items = _json_env(env, contract.ENV_FANOUT_ITEMS, list, None)
    batch: tuple[Any, ...] = ()
    if items is not None:
        batch = select_batch(
            items,
            _int_env(env, contract.ENV_FANOUT_BATCH_SIZE, 1, minimum=1),
            _int_env(env, contract.ENV_COMPLETION_INDEX, 0, minimum=0),
        )
    return Context(
        params=_json_env(env, contract.ENV_PARAMS, dict, {}),
        inputs=_json_env(env, contract.ENV_INPUTS, dict, {}),
        items=batch,
        workspace=Path(env.get(contract.ENV_WORKSPACE) or os.getcwd()),
        run=env.get(contract.ENV_RUN, ""),
        stage=env.get(contract.ENV_STAGE, ""),
        attempt=_int_env(env, contract.ENV_ATTEMPT, 1, minimum=1),
        logger=logger,
        _progress=progress,
        args=tuple(str(a) for a in _json_env(env, contract.ENV_ARGS, list, [])),
    )

"""The context read from a pod's env: fan-out batches and malformed values."""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubedag.worker.context import Context, context_from_env, select_batch
from kubedag.worker.errors import UsageError


@given(st.lists(st.integers(), min_size=1, max_size=50), st.integers(min_value=1, max_value=10))
def test_batches_partition_the_items(items: list[int], size: int) -> None:
    batches = [select_batch(items, size, i) for i in range(math.ceil(len(items) / size))]
    assert [x for batch in batches for x in batch] == items
    assert all(1 <= len(batch) <= size for batch in batches)


def _context(**env: str):  # type: ignore[no-untyped-def]
    return context_from_env(env, lambda f, m: None, logging.getLogger("t"))


@pytest.mark.parametrize(
    "env",
    [
        {"KUBEDAG_PARAMS": "[1]"},
        {"KUBEDAG_INPUTS": "nope"},
        {"KUBEDAG_FANOUT_ITEMS": "{}"},
        {"KUBEDAG_FANOUT_ITEMS": "[1]", "KUBEDAG_FANOUT_BATCH_SIZE": "0"},
        {"KUBEDAG_FANOUT_ITEMS": "[1]", "JOB_COMPLETION_INDEX": "x"},
        {"KUBEDAG_ATTEMPT": "0"},
    ],
)
def test_malformed_env_is_a_usage_error(env: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        _context(**env)


@pytest.mark.parametrize("fraction", [-0.1, 1.5, math.nan])
def test_progress_outside_zero_one_is_rejected(fraction: float) -> None:
    with pytest.raises(ValueError, match="within"):
        _context().report_progress(fraction)


def test_the_context_is_frozen_and_compares_like_a_frozen_dataclass(tmp_path: Path) -> None:
    """Written out by hand (no dataclasses import in the worker), with the same behaviour."""
    calls: list[tuple[float, str]] = []
    fields: dict[str, Any] = {
        "params": {"a": 1}, "inputs": {}, "items": (1, 2), "workspace": tmp_path, "run": "r",
        "stage": "s", "attempt": 2, "logger": logging.getLogger("t"),
    }
    context = Context(**fields, _progress=lambda f, m: calls.append((f, m)))
    for name in fields:
        with pytest.raises(AttributeError, match="frozen"):
            setattr(context, name, None)
        with pytest.raises(AttributeError, match="frozen"):
            delattr(context, name)
    with pytest.raises(AttributeError):
        context.results = {}  # type: ignore[attr-defined]
    assert repr(context) == (
        f"Context(params={{'a': 1}}, inputs={{}}, items=(1, 2), workspace={tmp_path!r}, run='r', "
        "stage='s', attempt=2, logger=<Logger t (WARNING)>, args=())"
    )
    same = Context(**fields, _progress=print)  # the callback is not compared
    assert context == same and context != Context(**{**fields, "attempt": 3}, _progress=print)
    assert context != object()
    hashable = {**fields, "params": (), "inputs": ()}
    quiet = Context(**hashable, _progress=lambda f, m: None)
    assert hash(Context(**hashable, _progress=print)) == hash(quiet)
    match context:
        case Context(params, _, items, workspace, run, stage, attempt):
            assert (params, items, workspace, run, stage, attempt) == (
                {"a": 1}, (1, 2), tmp_path, "r", "s", 2)
        case _:
            pytest.fail("no match")
    copied = copy.copy(context)
    assert copied == context and copied is not context
    copied.report_progress(0.5, "half")
    assert calls == [(0.5, "half")]


def test_a_processor_gets_its_stages_args() -> None:
    assert _context(KUBEDAG_ARGS='["--files", "a b"]').args == ("--files", "a b")
    assert _context().args == ()
    with pytest.raises(UsageError):
        _context(KUBEDAG_ARGS='{"files": 1}')

"""The context read from a pod's env: fan-out batches and malformed values."""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubedag.worker.context import context_from_env, select_batch
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

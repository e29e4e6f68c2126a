"""The termination message always fits the kubelet's limit and is always valid JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubedag import contract
from kubedag.worker.errors import OutputTooLargeError
from kubedag.worker.termination import error_message, outputs_message

USAGE = {"cpuSeconds": 1.5, "peakRssBytes": 123}


def test_outputs_right_at_the_limit_pass_and_one_more_byte_fails() -> None:
    overhead = len(outputs_message({"k": ""}, USAGE))
    fits = {"k": "a" * (contract.TERMINATION_MESSAGE_LIMIT - overhead)}
    assert len(outputs_message(fits, USAGE)) == contract.TERMINATION_MESSAGE_LIMIT
    with pytest.raises(OutputTooLargeError):
        outputs_message({"k": fits["k"] + "a"}, USAGE)


def test_multibyte_text_is_counted_in_bytes() -> None:
    with pytest.raises(OutputTooLargeError):
        outputs_message({"k": "é" * 2100}, USAGE)  # 2100 characters, 4200 bytes


@given(st.text(max_size=3000))
def test_error_messages_always_fit(error: str) -> None:
    data = error_message(error, USAGE)
    assert len(data) <= contract.TERMINATION_MESSAGE_LIMIT
    assert json.loads(data)["usage"] == USAGE

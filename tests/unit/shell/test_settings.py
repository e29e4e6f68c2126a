"""Operator settings from the environment."""

from __future__ import annotations

import pytest

from kubedag.core.decide import START_FAILURE_GRACE
from kubedag.shell.settings import OperatorSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEDAG_START_FAILURE_GRACE_SECONDS", raising=False)
    settings = OperatorSettings.from_env()
    assert settings.start_failure_grace_seconds == START_FAILURE_GRACE.total_seconds() == 90
    assert settings.jobs.termination_grace_seconds == 30
    assert settings.jobs.workspace_path == "/workspace"


def test_grace_periods_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEDAG_START_FAILURE_GRACE_SECONDS", "10")
    monkeypatch.setenv("KUBEDAG_STAGE_TERMINATION_GRACE_SECONDS", "5")
    settings = OperatorSettings.from_env()
    assert settings.start_failure_grace_seconds == 10
    assert settings.jobs.termination_grace_seconds == 5

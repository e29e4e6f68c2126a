"""Which replica leads under kopf peering, when a standby starts acting, and that a leader
kopf pauses leaves - checked against kopf's own peering function, not a copy of its rule."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.configs import configuration
from kopf._cogs.structs import references
from kopf._core.engines import peering

from kubedag.shell.settings import OperatorSettings
from kubedag.shell.standby import (
    DEMOTED_EXIT_CODE,
    KOPF_PEERING_LOGGER,
    Activation,
    exit_when_demoted,
    peering_priority,
)

PEERING = references.Resource(group="kopf.dev", version="v1", plural="clusterkopfpeerings",
                              namespaced=False)


def test_the_older_replica_has_the_higher_priority() -> None:
    assert peering_priority(1000.000, 999) > peering_priority(1000.001, 0)
    assert peering_priority(1000.0, 1) != peering_priority(1000.0, 2)
    assert peering_priority(2.0e9, 999) > 0


def _record(priority: int, seconds_ago: float = 0.0, lifetime: int = 10) -> dict[str, Any]:
    seen = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


async def _kopf_pauses(me: int, peers: dict[str, dict[str, Any]]) -> bool:
    """Whether kopf's own peering function pauses a replica of priority ``me``."""
    settings = configuration.OperatorSettings()
    settings.peering.name, settings.peering.priority = "kubedag", me
    toggle = await aiotoggles.ToggleSet(any).make_toggle(False)
    woken = asyncio.Event()
    woken.set()  # kopf would sleep until the blocking peer's expiry: not here
    body = {"metadata": {"name": "kubedag"}, "status": peers}
    await peering.process_peering_event(
        raw_event={"type": "MODIFIED", "object": body},  # type: ignore[typeddict-item]
        namespace=None, resource=PEERING, identity=peering.Identity("me"),
        settings=settings, autoclean=False, conflicts_found=toggle, stream_pressure=woken)
    return toggle.is_on()


def test_kopf_lets_the_oldest_live_replica_lead() -> None:
    old, new = peering_priority(1000.0), peering_priority(1005.0)
    assert asyncio.run(_kopf_pauses(new, {"other": _record(old)}))
    assert not asyncio.run(_kopf_pauses(old, {"other": _record(new)}))
    # The old leader's record expired (it died): the standby resumes.
    assert not asyncio.run(_kopf_pauses(new, {"other": _record(old, seconds_ago=11)}))
    # Equal priorities (kopf's default, 0, for every replica) pause everyone: the reason for
    # peering_priority.
    assert asyncio.run(_kopf_pauses(0, {"other": _record(0)}))


def _activated() -> Activation:
    async def nothing() -> None:
        return None

    activation = Activation(nothing)
    asyncio.run(activation.ensure())
    return activation


@pytest.mark.parametrize("active", [False, True])
def test_a_replica_that_has_acted_exits_when_kopf_pauses_it(active: bool) -> None:
    """kopf's real pause message, through the guard: a standby pausing at start stays, an
    activated replica exits."""
    activation = _activated() if active else Activation(lambda: asyncio.sleep(0))
    exits: list[int] = []
    logger = logging.getLogger(KOPF_PEERING_LOGGER)
    level = logger.level
    logger.setLevel(logging.WARNING)  # the guard lowers it to INFO: kopf's pause is an INFO
    guard = exit_when_demoted(activation, exit=exits.append)
    try:
        old, new = peering_priority(1000.0), peering_priority(1005.0)
        assert asyncio.run(_kopf_pauses(new, {"other": _record(old)}))
        assert asyncio.run(_kopf_pauses(0, {"other": _record(0)}))
    finally:
        logger.removeFilter(guard)
        logger.setLevel(level)
    assert exits == ([DEMOTED_EXIT_CODE] * 2 if active else [])


def test_activation_runs_once_and_every_caller_waits_for_it() -> None:
    calls: list[str] = []

    async def activate() -> None:
        calls.append("start")
        await asyncio.sleep(0.01)
        calls.append("done")

    async def handlers() -> list[str]:
        activation = Activation(activate)
        seen: list[str] = []

        async def handler() -> None:
            await activation.ensure()
            seen.append(calls[-1])

        await asyncio.gather(*(handler() for _ in range(5)))
        return seen

    assert asyncio.run(handlers()) == ["done"] * 5
    assert calls == ["start", "done"]


def test_a_failed_activation_is_tried_again() -> None:
    attempts: list[int] = []

    async def activate() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("API server unreachable")

    async def twice() -> bool:
        activation = Activation(activate)
        with pytest.raises(ConnectionError):
            await activation.ensure()
        await activation.ensure()
        return activation.active

    assert asyncio.run(twice())
    assert len(attempts) == 2


def test_peering_lifetime_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEDAG_PEERING_LIFETIME_SECONDS", raising=False)
    assert OperatorSettings.from_env().peering_lifetime_seconds == 10
    monkeypatch.setenv("KUBEDAG_PEERING_LIFETIME_SECONDS", "30")
    assert OperatorSettings.from_env().peering_lifetime_seconds == 30
    monkeypatch.setenv("KUBEDAG_PEERING_LIFETIME_SECONDS", "1")
    with pytest.raises(ValueError, match="at least"):
        OperatorSettings.from_env()

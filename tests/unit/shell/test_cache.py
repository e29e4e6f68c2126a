"""RunCache: the newest body of each run, and the Jobs just created (expectations)."""

from __future__ import annotations

from typing import Any

import pytest

from kubedag.core.observe import JobSummary
from kubedag.shell import cache as cache_module
from kubedag.shell.cache import EXPECTATION_SECONDS, RunCache


def body(rv: str | None, uid: str = "u1", name: str = "r", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "ns", "name": name, "uid": uid}
    if rv is not None:
        meta["resourceVersion"] = rv
    return {"metadata": meta, **extra}


def summary(name: str) -> JobSummary:
    return JobSummary(name=name, stage="a", attempt=1, created=None, completions=1,
                      deleting=False)


@pytest.mark.parametrize(("versions", "kept"), [
    (["5"], "5"),
    (["5", "7"], "7"),
    (["7", "5"], "7"),  # an older watch event after our own status write: ignored
    (["7", "7"], "7"),
    (["10", "9"], "10"),  # compared as numbers, not strings
    (["5", "garbage"], "5"),
    ([None, "1"], "1"),
])
def test_put_keeps_the_newest_version(versions: list[str | None], kept: str) -> None:
    runs = RunCache()
    for rv in versions:
        key = runs.put(body(rv))
    assert key == ("ns", "r")
    assert runs.bodies[key]["metadata"]["resourceVersion"] == kept
    assert runs.keys_by_uid["u1"] == key


def test_offer_says_which_events_are_news() -> None:
    """The echo of the operator's own status write (its response was put first) is no news;
    anything newer, a new run, or a new incarnation of a name is."""
    runs = RunCache()
    assert runs.offer(body("5")) == ("ns", "r")  # first sight
    runs.put(body("7"))  # the status write's response
    assert runs.offer(body("7")) is None  # its echo
    assert runs.offer(body("6")) is None  # an older event arriving late
    assert runs.bodies[("ns", "r")]["metadata"]["resourceVersion"] == "7"
    assert runs.offer(body("8")) == ("ns", "r")  # someone else's change
    assert runs.offer(body("2", uid="new")) == ("ns", "r")  # deleted and created again
    assert runs.bodies[("ns", "r")]["metadata"]["uid"] == "new"


def test_a_recreated_run_replaces_the_old_one_whatever_its_version() -> None:
    runs = RunCache()
    runs.put(body("100", uid="old"))
    runs.put(body("3", uid="new"))
    assert runs.bodies[("ns", "r")]["metadata"]["uid"] == "new"


def test_forget_removes_the_run_and_its_expectations() -> None:
    runs = RunCache()
    runs.put(body("1"))
    runs.expect("u1", summary("r-a-1"))
    assert runs.forget(body("1")) == ("ns", "r")
    assert runs.bodies == {} and runs.keys_by_uid == {} and runs.created == {}


def test_forgetting_an_old_incarnation_keeps_the_new_one() -> None:
    runs = RunCache()
    runs.put(body("1", uid="old"))
    runs.put(body("2", uid="new"))
    runs.forget(body("1", uid="old"))
    assert runs.bodies[("ns", "r")]["metadata"]["uid"] == "new"
    assert runs.keys_by_uid == {"new": ("ns", "r")}


def test_expectations_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: clock[0])
    runs = RunCache()
    runs.expect("u1", summary("r-a-1"))
    clock[0] += 10
    runs.expect("u1", summary("r-b-1"))
    runs.expect("u2", summary("other-a-1"))
    assert set(runs.expected("u1")) == {"r-a-1", "r-b-1"}
    clock[0] += EXPECTATION_SECONDS - 5  # a is 35 s old (expired), b 25 s (kept)
    assert set(runs.expected("u1")) == {"r-b-1"}
    clock[0] += 10
    assert runs.expected("u1") == {}
    assert runs.expected("unknown") == {}
    assert set(runs.expected("u2")) == set()  # same clock: also expired


def test_expecting_again_refreshes_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: clock[0])
    runs = RunCache()
    runs.expect("u1", summary("r-a-1"))
    clock[0] = EXPECTATION_SECONDS - 1
    runs.expect("u1", summary("r-a-1"))
    clock[0] = EXPECTATION_SECONDS + 10
    assert set(runs.expected("u1")) == {"r-a-1"}
    assert runs.expected("u1")["r-a-1"].stage == "a"

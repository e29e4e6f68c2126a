"""Values kept per live object: found by identity only, dropped with the object."""

from __future__ import annotations

import gc
from dataclasses import dataclass

from kubedag.core.memo import WeakById, WeakMemo


@dataclass(frozen=True)
class Thing:
    name: str


def test_a_value_is_found_for_the_same_object_only_and_goes_with_it() -> None:
    kept: WeakById[Thing, int] = WeakById()
    a, equal_to_a = Thing("a"), Thing("a")
    kept.keep(a, 1)
    assert kept.lookup(a) == (1,)
    assert kept.lookup(equal_to_a) is None  # equal is not the same: it may be newer
    del a
    gc.collect()
    assert len(kept) == 0


def test_a_memo_builds_once_per_object() -> None:
    built: list[str] = []

    def build(thing: Thing) -> str:
        built.append(thing.name)
        return thing.name.upper()

    memo = WeakMemo(build)
    a = Thing("a")
    assert (memo(a), memo(a), memo(Thing("b"))) == ("A", "A", "B")
    assert built == ["a", "b"]

"""The operator's memory settings: the garbage collector's pace."""

from __future__ import annotations

import gc

from kubedag.shell.memory import YOUNG_COLLECTION_THRESHOLD, collect_garbage_less_often


def test_the_garbage_collector_runs_less_often_and_still_runs() -> None:
    before = gc.get_threshold()
    try:
        collect_garbage_less_often()
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *before[1:])
        assert gc.isenabled()
    finally:
        gc.set_threshold(*before)

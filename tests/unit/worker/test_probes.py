"""The allocate probe: its memory is resident, so the worker's usage report sees it."""

from __future__ import annotations

import json
from pathlib import Path

from kubedag import contract
from tests.unit.worker.support import run_worker

MIB = 2**20


def test_allocate_reports_a_peak_rss_near_what_it_allocated(tmp_path: Path) -> None:
    result = run_worker(tmp_path, "kubedag.worker.processors.probes:allocate",
                        KUBEDAG_PARAMS=json.dumps({"mebibytes": 64, "holdSeconds": 0.3}))
    assert result.code == contract.EXIT_OK, result.stderr
    assert result.message["outputs"] == {"allocatedBytes": 64 * MIB, "pagesTouched": 64 * 256}
    peak = result.message["usage"]["peakRssBytes"]
    assert 64 * MIB <= peak <= 64 * MIB + 48 * MIB, peak / MIB


def test_allocate_refuses_a_bad_size(tmp_path: Path) -> None:
    result = run_worker(tmp_path, "kubedag.worker.processors.probes:allocate",
                        KUBEDAG_PARAMS=json.dumps({"mebibytes": "lots"}))
    assert result.code == contract.EXIT_PERMANENT
    assert "mebibytes" in result.message["error"]

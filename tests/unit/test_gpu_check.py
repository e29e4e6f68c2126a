"""The real-GPU check's own logic (tests/gpu/check_gpu_usage.py), which runs only on a GPU."""

from __future__ import annotations

import subprocess
import sys

from tests.gpu.check_gpu_usage import (
    EXIT_CANNOT_RUN,
    REPO,
    UPPER_BOUND,
    judge,
    worker_env,
)

GIB = 2**30
RESERVED = 6.4 * GIB
# What the H200 reported for a 4 GiB run (../shared/gpu.md), scaled to the default 6 GiB ballast.
CONTEXT = 623_706_112
GOOD = {"gpuDevices": 1, "gpuMemoryPeakBytes": int(RESERVED + CONTEXT),
        "gpuUtilizationMean": 0.6, "gpuUtilizationPeak": 1.0}
OUTPUTS = {"maxMemoryReserved": int(RESERVED)}


def failed(outputs: dict[str, object], usage: dict[str, object]) -> list[str]:
    return [c.name for c in judge(outputs, usage) if not c.passed]


def test_a_report_with_the_context_on_top_of_what_was_reserved_passes() -> None:
    assert failed(OUTPUTS, GOOD) == []


def test_the_bounds_catch_a_missing_baseline_and_an_unseen_allocation() -> None:
    idle = 644_939_776  # in use on the idle H200: a sampler that kept it would report it too
    assert (GOOD["gpuMemoryPeakBytes"] + idle) / RESERVED > UPPER_BOUND
    assert failed(OUTPUTS, {**GOOD, "gpuMemoryPeakBytes": GOOD["gpuMemoryPeakBytes"] + idle}) \
        == [f"peak memory <= {UPPER_BOUND:.0%} of reserved"]
    assert failed(OUTPUTS, {**GOOD, "gpuMemoryPeakBytes": int(RESERVED) - 1}) \
        == ["peak memory >= reserved"]
    assert failed(OUTPUTS, {**GOOD, "gpuUtilizationPeak": 0.5}) == ["utilization peak > 50%"]


def test_missing_gpu_fields_or_reservation_fail_with_a_reason() -> None:
    checks = judge(OUTPUTS, {"cpuSeconds": 1.0, "peakRssBytes": 5})
    assert [(c.name, c.passed) for c in checks] == [("GPU fields reported", False)]
    assert "gpuMemoryPeakBytes" in checks[0].detail
    assert failed({}, GOOD) == ["processor reported what it reserved"]


def test_the_worker_gets_the_repo_and_a_named_gpu() -> None:
    env = worker_env({"PATH": "/bin", "PYTHONPATH": "/tmp/site"})
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert env["PYTHONPATH"].split(":") == [str(REPO / "operator"), str(REPO), "/tmp/site"]
    assert "CUDA_VISIBLE_DEVICES" not in worker_env({"NVIDIA_VISIBLE_DEVICES": "0"})


def test_the_check_says_clearly_when_it_cannot_run() -> None:
    done = subprocess.run([sys.executable, "tests/gpu/check_gpu_usage.py"], cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "operator"),
                               "CUDA_VISIBLE_DEVICES": "-1"},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == EXIT_CANNOT_RUN, done.stderr
    assert done.stderr.startswith("CANNOT RUN: the environment makes no GPU visible")

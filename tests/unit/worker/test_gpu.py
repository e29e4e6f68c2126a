"""GPU usage through a scripted NVML: which devices, baseline and peaks, and what is left out.

The real-GPU check is tests/gpu/check_gpu_usage.py; here ``fake_nvml/pynvml.py`` plays NVML,
in-process and, for the worker end to end, as the ``pynvml`` a worker subprocess imports.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kubedag.worker.gpu import (
    CUDA_VISIBLE_DEVICES,
    NVIDIA_VISIBLE_DEVICES,
    DeviceSelection,
    GpuSampler,
    GpuUsage,
    gpu_sampler,
    resolve,
    visible_devices,
)
from kubedag.worker.usage import Usage, UsageSampler
from tests.unit.worker.support import REPO, run_worker

FAKE = Path(__file__).parent / "fake_nvml"
GIB = 2**30
ALL = DeviceSelection(NVIDIA_VISIBLE_DEVICES)


def fake_nvml(*gpus: dict[str, Any], **spec: Any) -> ModuleType:
    """A fresh fake ``pynvml`` module scripted with ``gpus`` (see fake_nvml/pynvml.py)."""
    loader = importlib.util.spec_from_file_location("fake_pynvml", FAKE / "pynvml.py")
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    module.script({"gpus": list(gpus), **spec})
    return module


def gpu(uuid: str = "GPU-a", memory: tuple[int, ...] = (0,),
        utilization: tuple[int, ...] | None = (0,), **extra: Any) -> dict[str, Any]:
    return {"uuid": uuid, "memory": list(memory),
            "utilization": None if utilization is None else list(utilization), **extra}


def four_gpus() -> ModuleType:
    return fake_nvml(*(gpu(f"GPU-{c}{c}{c}") for c in "abcd"))


def measure(nvml: ModuleType, selection: DeviceSelection = ALL, samples: int = 0
            ) -> GpuUsage | None:
    sampler = GpuSampler(selection, lambda: nvml)
    if not sampler.start():
        assert sampler.stop() is None
        return None
    for _ in range(samples):
        sampler.sample()
    return sampler.stop()


# --- which devices --------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({NVIDIA_VISIBLE_DEVICES: "void"}, None),
    ({NVIDIA_VISIBLE_DEVICES: "none"}, None),
    ({NVIDIA_VISIBLE_DEVICES: "NONE"}, None),
    ({NVIDIA_VISIBLE_DEVICES: ""}, None),
    ({NVIDIA_VISIBLE_DEVICES: "all"}, ALL),
    ({NVIDIA_VISIBLE_DEVICES: "/var/run/nvidia-container-devices"}, ALL),
    ({NVIDIA_VISIBLE_DEVICES: "0,1"}, DeviceSelection(NVIDIA_VISIBLE_DEVICES, ("0", "1"))),
    ({NVIDIA_VISIBLE_DEVICES: " GPU-aaa , GPU-bbb "},
     DeviceSelection(NVIDIA_VISIBLE_DEVICES, ("GPU-aaa", "GPU-bbb"))),
    # CUDA_VISIBLE_DEVICES narrows what CUDA uses, and is all a local run has.
    ({NVIDIA_VISIBLE_DEVICES: "all", CUDA_VISIBLE_DEVICES: "1"},
     DeviceSelection(CUDA_VISIBLE_DEVICES, ("1",))),
    ({CUDA_VISIBLE_DEVICES: "GPU-aaa"}, DeviceSelection(CUDA_VISIBLE_DEVICES, ("GPU-aaa",))),
    ({NVIDIA_VISIBLE_DEVICES: "all", CUDA_VISIBLE_DEVICES: ""}, None),
    ({CUDA_VISIBLE_DEVICES: "-1"}, None),
    ({CUDA_VISIBLE_DEVICES: "0,-1,1"}, DeviceSelection(CUDA_VISIBLE_DEVICES, ("0",))),
    # The runtime gave the container no GPU, whatever the image says to CUDA.
    ({NVIDIA_VISIBLE_DEVICES: "none", CUDA_VISIBLE_DEVICES: "0"}, None),
    ({NVIDIA_VISIBLE_DEVICES: "void", CUDA_VISIBLE_DEVICES: "0"}, None),
])
def test_the_env_selects_the_devices(env: dict[str, str],
                                     expected: DeviceSelection | None) -> None:
    assert visible_devices(env) == expected


def test_no_visible_device_means_no_nvml_import() -> None:
    def forbidden() -> ModuleType:
        raise AssertionError("NVML imported although no GPU is visible")

    assert gpu_sampler({NVIDIA_VISIBLE_DEVICES: "void"}, forbidden) is None
    assert gpu_sampler({}, forbidden) is None
    sampler = gpu_sampler({NVIDIA_VISIBLE_DEVICES: "all"}, forbidden)
    assert sampler is not None  # the import waits for start(), just before the work


def names(nvml: ModuleType, variable: str, *entries: str) -> list[str]:
    """The devices resolved for ``variable=entries`` (all of them without entries)."""
    nvml.nvmlInit()
    selection = DeviceSelection(variable, entries or None)
    return [d.name for d in resolve(nvml, selection)]


def test_nvidia_indexes_are_the_hosts_and_a_container_sees_its_devices_from_zero() -> None:
    one = fake_nvml(gpu("GPU-ddd"))  # a container given host GPU 3: NVML calls it 0
    assert names(one, NVIDIA_VISIBLE_DEVICES, "3") == ["0"]
    assert names(four_gpus(), NVIDIA_VISIBLE_DEVICES, "0", "2") == ["0", "2"]  # no container
    assert names(four_gpus(), NVIDIA_VISIBLE_DEVICES, "GPU-ccc", "GPU-zzz", "1") == ["2", "1"]
    assert names(four_gpus(), NVIDIA_VISIBLE_DEVICES) == ["0", "1", "2", "3"]


def test_cuda_entries_are_indexes_or_uuid_prefixes_and_stop_at_the_first_unknown() -> None:
    nvml = four_gpus()
    assert names(nvml, CUDA_VISIBLE_DEVICES, "1", "0") == ["1", "0"]
    assert names(nvml, CUDA_VISIBLE_DEVICES, "GPU-cc", "0", "0") == ["2", "0"]
    assert names(nvml, CUDA_VISIBLE_DEVICES, "3", "7", "1") == ["3"]
    assert names(nvml, CUDA_VISIBLE_DEVICES, "GPU-zzz", "1") == []


def test_a_mig_instance_is_found_by_its_uuid() -> None:
    nvml = fake_nvml(gpu("GPU-aaa"), mig={"MIG-111": {"memory": [10, 110], "utilization": None}})
    assert names(nvml, NVIDIA_VISIBLE_DEVICES, "MIG-111") == ["MIG-111"]
    usage = measure(nvml, DeviceSelection(CUDA_VISIBLE_DEVICES, ("MIG-111",)))
    # A MIG instance has memory but no utilization reading: those fields stay out.
    assert usage == GpuUsage(devices=1, memory_peak_bytes=100, utilization_mean=None,
                             utilization_peak=None)
    assert usage.to_json() == {"gpuDevices": 1, "gpuMemoryPeakBytes": 100}


# --- what is measured -----------------------------------------------------------------------


def test_peak_memory_is_above_the_baseline_summed_over_devices() -> None:
    nvml = fake_nvml(
        # The baseline (first reading) of GPU a is 1 GiB of someone else's, later freed.
        gpu("GPU-a", memory=(1 * GIB, 5 * GIB, 3 * GIB, 0), utilization=(100, 50, 0)),
        gpu("GPU-b", memory=(GIB // 2, GIB, GIB), utilization=(50, 50, 0)),
    )
    usage = measure(nvml, samples=2)  # + the last reading in stop()
    assert usage is not None
    assert usage.devices == 2
    assert usage.memory_peak_bytes == 4 * GIB + GIB // 2
    assert usage.utilization_mean == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    assert usage.utilization_peak == 1.0
    assert nvml.STATE["shutdowns"] == nvml.STATE["initialised"] == 1


def test_memory_freed_below_the_baseline_is_no_negative_peak() -> None:
    usage = measure(fake_nvml(gpu(memory=(2 * GIB, GIB))), samples=3)
    assert usage is not None and usage.memory_peak_bytes == 0


def test_to_json_rounds_ratios_and_is_merged_into_the_usage_report() -> None:
    gpu_usage = GpuUsage(2, 123, 0.123456, 0.9)
    assert Usage(1.0, 2, gpu_usage).to_json() == {
        "cpuSeconds": 1.0, "peakRssBytes": 2, "gpuDevices": 2, "gpuMemoryPeakBytes": 123,
        "gpuUtilizationMean": 0.123, "gpuUtilizationPeak": 0.9}
    assert Usage(1.0, 2).to_json() == {"cpuSeconds": 1.0, "peakRssBytes": 2}


# --- what cannot be measured is left out ----------------------------------------------------


def test_nvml_that_does_not_start_leaves_the_fields_out() -> None:
    nvml = fake_nvml(gpu(), init_error=9)  # NVML_ERROR_DRIVER_NOT_LOADED
    assert measure(nvml) is None
    usage = UsageSampler(period=0.01, gpu=GpuSampler(ALL, lambda: nvml)).start().stop()
    assert usage.gpu is None
    assert set(usage.to_json()) == {"cpuSeconds", "peakRssBytes"}


def test_a_missing_nvidia_ml_py_leaves_the_fields_out() -> None:
    def missing() -> ModuleType:
        raise ModuleNotFoundError("No module named 'pynvml'")

    assert GpuSampler(ALL, missing).start() is False


def test_no_device_readable_at_the_start_leaves_the_fields_out() -> None:
    nvml = fake_nvml(gpu(lost_after=0))
    assert measure(nvml, samples=2) is None
    assert nvml.STATE["shutdowns"] == 1
    assert measure(fake_nvml(), samples=1) is None  # NVIDIA_VISIBLE_DEVICES=all, no GPU there


def test_a_device_lost_mid_run_keeps_what_it_reported_and_is_not_read_again() -> None:
    lost = gpu("GPU-b", memory=(0, 2 * GIB), utilization=(100,), lost_after=2)
    nvml = fake_nvml(gpu("GPU-a", memory=(0, GIB), utilization=(20,)), lost)
    usage = measure(nvml, samples=4)
    assert usage is not None
    assert usage.devices == 2  # it was given, and measured while it answered
    assert usage.memory_peak_bytes == 3 * GIB
    assert usage.utilization_peak == 1.0
    # One sample with both (0.6), four with GPU a alone (0.2).
    assert usage.utilization_mean == pytest.approx((0.6 + 4 * 0.2) / 5)
    assert nvml.GPUS[1].memory_reads == 2  # baseline + the sample that answered


def test_the_usage_sampler_reads_the_gpus_in_its_thread() -> None:
    nvml = fake_nvml(gpu(memory=(GIB, 3 * GIB), utilization=(80,)))
    sampler = UsageSampler(period=0.01, gpu=GpuSampler(ALL, lambda: nvml), gpu_period=0.01)
    sampler.start()
    deadline = time.monotonic() + 10
    while nvml.GPUS[0].utilization_reads < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # the reads happen in the sampler's thread
    usage = sampler.stop()
    assert nvml.GPUS[0].utilization_reads >= 3
    assert usage.gpu == GpuUsage(1, 2 * GIB, 0.8, 0.8)


# --- the worker end to end, NVML imported as a worker in a pod would ---------------------------


def _gpu_env(tmp_path: Path, **env: str) -> dict[str, str]:
    script = {"gpus": [gpu("GPU-aaa", memory=(GIB, 9 * GIB), utilization=(70,))]}
    return {"PYTHONPATH": f"{REPO}:{FAKE}", "FAKE_NVML": json.dumps(script),
            "FAKE_NVML_IMPORTED": str(tmp_path / "nvml-imported"), **env}


def test_the_worker_reports_gpu_usage_with_its_outputs(tmp_path: Path) -> None:
    result = run_worker(tmp_path, "tests.unit.worker.sample_processors:echo",
                        **_gpu_env(tmp_path, NVIDIA_VISIBLE_DEVICES="GPU-aaa"))
    assert result.code == 0, result.stderr
    usage = result.message["usage"]
    assert {k: v for k, v in usage.items() if k.startswith("gpu")} == {
        "gpuDevices": 1, "gpuMemoryPeakBytes": 8 * GIB, "gpuUtilizationMean": 0.7,
        "gpuUtilizationPeak": 0.7}
    assert usage["cpuSeconds"] >= 0 and usage["peakRssBytes"] > 0


def test_a_worker_without_a_visible_gpu_never_imports_nvml(tmp_path: Path) -> None:
    result = run_worker(tmp_path, "tests.unit.worker.sample_processors:echo",
                        **_gpu_env(tmp_path, NVIDIA_VISIBLE_DEVICES="void"))
    assert result.code == 0, result.stderr
    assert set(result.message["usage"]) == {"cpuSeconds", "peakRssBytes"}
    assert not (tmp_path / "nvml-imported").exists()

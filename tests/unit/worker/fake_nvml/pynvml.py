"""A stand-in for nvidia-ml-py's ``pynvml``: scripted GPUs, so the sampler is tested without one.

Two ways in: a worker subprocess imports it as ``pynvml`` when this folder is on PYTHONPATH
(scripted by the ``FAKE_NVML`` env var, JSON); in-process tests load a fresh copy with
``tests.unit.worker.test_gpu.fake_nvml`` and call ``script``. Only the calls the sampler makes
exist, so a new call fails loudly here before it fails on a real GPU.

A script: ``{"init_error": <NVML code or null>, "gpus": [{"uuid": "GPU-...", "memory": [bytes
used, read by read; the last repeats], "utilization": [percent, likewise] or null (not
supported, as on a MIG instance), "lost_after": reads of memory that succeed before the GPU is
lost, or null}], "mig": {"MIG-...": <a gpu like the above>}}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNINITIALIZED = 1


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class _Gpu:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.uuid: str = spec["uuid"]
        self.memory: list[int] = list(spec["memory"])
        self.utilization: list[int] | None = spec.get("utilization")
        self.lost_after: int | None = spec.get("lost_after")
        self.memory_reads = 0
        self.utilization_reads = 0

    def read_memory(self) -> int:
        if self.lost_after is not None and self.memory_reads >= self.lost_after:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        value = self.memory[min(self.memory_reads, len(self.memory) - 1)]
        self.memory_reads += 1
        return value

    def read_utilization(self) -> int:
        if self.utilization is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        value = self.utilization[min(self.utilization_reads, len(self.utilization) - 1)]
        self.utilization_reads += 1
        return value


GPUS: list[_Gpu] = []
MIG: dict[str, _Gpu] = {}
STATE = {"init_error": None, "initialised": 0, "shutdowns": 0}


def script(spec: dict[str, Any]) -> None:
    GPUS[:] = [_Gpu(g) for g in spec.get("gpus", [])]
    MIG.clear()
    MIG.update({uuid: _Gpu({"uuid": uuid, **g}) for uuid, g in spec.get("mig", {}).items()})
    STATE.update(init_error=spec.get("init_error"), initialised=0, shutdowns=0)


def _check() -> None:
    if STATE["initialised"] <= STATE["shutdowns"]:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)


def nvmlInit() -> None:  # noqa: N802 - pynvml's names from here on
    if STATE["init_error"] is not None:
        raise NVMLError(int(STATE["init_error"]))
    STATE["initialised"] += 1


def nvmlShutdown() -> None:  # noqa: N802
    _check()
    STATE["shutdowns"] += 1


def nvmlDeviceGetCount() -> int:  # noqa: N802
    _check()
    return len(GPUS)


def nvmlDeviceGetHandleByIndex(index: int) -> _Gpu:  # noqa: N802
    _check()
    if not 0 <= index < len(GPUS):
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return GPUS[index]


def nvmlDeviceGetHandleByUUID(uuid: str) -> _Gpu:  # noqa: N802
    _check()
    for gpu in [*GPUS, *MIG.values()]:
        if gpu.uuid == uuid:
            return gpu
    raise NVMLError(NVML_ERROR_NOT_FOUND)


def nvmlDeviceGetUUID(handle: _Gpu) -> str:  # noqa: N802
    _check()
    return handle.uuid


def nvmlDeviceGetMemoryInfo(handle: _Gpu) -> SimpleNamespace:  # noqa: N802
    _check()
    return SimpleNamespace(used=handle.read_memory(), total=150 * 2**30)


def nvmlDeviceGetUtilizationRates(handle: _Gpu) -> SimpleNamespace:  # noqa: N802
    _check()
    return SimpleNamespace(gpu=handle.read_utilization(), memory=0)


if os.environ.get("FAKE_NVML_IMPORTED"):  # lets a test see whether the worker imported NVML
    Path(os.environ["FAKE_NVML_IMPORTED"]).touch()
script(json.loads(os.environ.get("FAKE_NVML", '{"gpus": []}')))

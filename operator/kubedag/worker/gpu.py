"""GPU usage of the devices this attempt was given, for the usage report: NVML via nvidia-ml-py.

A GPU request is the most expensive guess in a Pipeline, so the worker measures what an attempt
really used: the peak device memory in use above what was in use before the processor started,
and how busy the GPUs were (NVML's utilization: the share of time a kernel was running).

Why device totals and not per-process figures: inside a pod NVML reports the host's PIDs, which
never match the container's own, so per-process memory cannot be attributed there. The device
plugin hands a pod whole devices, so "memory used now minus memory used before we started", over
the devices the pod was given, is the attempt's own (the CUDA context included, which is real
memory the request must cover: about 585 MiB on an H200).

Which devices: the environment says, and nothing is imported unless it names some.

* ``NVIDIA_VISIBLE_DEVICES`` is read by the NVIDIA container runtime when the container is
  created: ``void``, empty or unset mean no GPU, ``none`` no GPU (driver libraries only),
  ``all`` every device, else a list of indexes or UUIDs (the device plugin's default strategy
  sets the UUIDs of the allocated GPUs). The container then sees only those devices, renumbered
  from 0; a path (the plugin's ``volume-mounts`` strategy) means the same as ``all``.
* ``CUDA_VISIBLE_DEVICES`` narrows, inside the process, what CUDA uses: indexes into the devices
  the process sees, or UUIDs (a unique prefix is enough). It wins when both are set, because it
  is what the processor's CUDA actually obeys, and it is the only one a local run (no container
  runtime) has. Like CUDA, the list ends at the first entry that names no device; empty or
  ``-1`` means no GPU. An explicit ``none`` or ``void`` in ``NVIDIA_VISIBLE_DEVICES`` still
  means no GPU: the runtime gave the container none, whatever an image set for CUDA.

Measuring must never cost the stage: without a visible device, nvidia-ml-py is not imported (it
pulls in ctypes and subprocess, ~2 MiB of the RSS the worker reports as the stage's); a missing
module, an NVML that cannot start or a device that fails mid-run leave the figures they could
not measure out of the report (absent, never zero), with a log line saying why.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

NVIDIA_VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
NVML_MODULE = "pynvml"  # what nvidia-ml-py installs
NO_DEVICES = frozenset({"none", "void"})
PERCENT = 100.0


class DeviceSelection(NamedTuple):
    """The devices the env names: ``entries`` None means every device the process sees."""

    variable: str  # the variable that decided, for log lines
    entries: tuple[str, ...] | None = None


def visible_devices(env: Mapping[str, str]) -> DeviceSelection | None:
    """The devices to measure according to ``env``, or None when it names no GPU at all."""
    nvidia = env.get(NVIDIA_VISIBLE_DEVICES)
    if nvidia is not None and nvidia.strip().lower() in NO_DEVICES:
        return None
    cuda = env.get(CUDA_VISIBLE_DEVICES)
    if cuda is not None:
        entries = _cuda_entries(cuda)
        return DeviceSelection(CUDA_VISIBLE_DEVICES, entries) if entries else None
    if nvidia is None or not nvidia.strip():
        return None
    value = nvidia.strip()
    if value.lower() == "all" or value.startswith("/"):
        return DeviceSelection(NVIDIA_VISIBLE_DEVICES)
    entries = tuple(e.strip() for e in value.split(",") if e.strip())
    return DeviceSelection(NVIDIA_VISIBLE_DEVICES, entries) if entries else None


def _cuda_entries(value: str) -> tuple[str, ...]:
    """CUDA's reading of the list: it ends at an empty or negative entry (``-1`` hides all)."""
    entries: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry or entry.startswith("-"):
            break
        entries.append(entry)
    return tuple(entries)


def import_nvml() -> ModuleType:
    """The real NVML bindings; imported only here, when a device is visible.

    The sampler calls nvmlInit, nvmlShutdown, nvmlDeviceGetCount, nvmlDeviceGetHandleByIndex,
    nvmlDeviceGetHandleByUUID, nvmlDeviceGetUUID, nvmlDeviceGetMemoryInfo (``.used``, bytes),
    nvmlDeviceGetUtilizationRates (``.gpu``, percent), and catches NVMLError, whose ``value``
    is NVML's return code (NVML_ERROR_NOT_SUPPORTED where a device has no such reading). Tests
    pass a module of their own with the same names.
    """
    return importlib.import_module(NVML_MODULE)


class Device(NamedTuple):
    name: str  # NVML's index in this process's view, or a MIG instance's UUID
    handle: Any


def resolve(nvml: ModuleType, selection: DeviceSelection) -> list[Device]:
    """The NVML devices ``selection`` names, each once, in the order named."""
    every = [Device(str(i), nvml.nvmlDeviceGetHandleByIndex(i))
             for i in range(nvml.nvmlDeviceGetCount())]
    entries = selection.entries
    if entries is None:
        return every
    by_runtime = selection.variable == NVIDIA_VISIBLE_DEVICES  # the container runtime's list
    if by_runtime and all(e.isdigit() for e in entries) and len(every) == len(entries):
        # The runtime gave the container exactly these (host) indexes, renumbered from 0.
        return every
    chosen: dict[str, Device] = {}
    for entry in entries:
        device = _find(nvml, every, entry)
        if device is None:
            log.warning("%s names %r, which is no GPU NVML sees: not measured",
                        selection.variable, entry)
            if by_runtime:
                continue
            break  # CUDA ignores the rest of its list from the first device it cannot find
        chosen.setdefault(device.name, device)
    return list(chosen.values())


def _find(nvml: ModuleType, every: Sequence[Device], entry: str) -> Device | None:
    if entry.isdigit():
        index = int(entry)
        return every[index] if index < len(every) else None
    for device in every:
        uuid = nvml.nvmlDeviceGetUUID(device.handle)
        if (uuid.decode() if isinstance(uuid, bytes) else uuid).startswith(entry):
            return device
    try:  # a MIG instance is not among the enumerated GPUs, but NVML finds it by its UUID
        return Device(entry, nvml.nvmlDeviceGetHandleByUUID(entry))
    except nvml.NVMLError:
        return None


class GpuUsage(NamedTuple):
    """What the attempt used of its GPUs; a figure is None when it could not be measured."""

    devices: int
    memory_peak_bytes: int | None
    utilization_mean: float | None  # 0..1
    utilization_peak: float | None  # 0..1

    def to_json(self) -> dict[str, float | int]:
        """The usage report's GPU fields, camelCase; unmeasured ones are left out."""
        fields = {"gpuDevices": self.devices, "gpuMemoryPeakBytes": self.memory_peak_bytes,
                  "gpuUtilizationMean": _ratio(self.utilization_mean),
                  "gpuUtilizationPeak": _ratio(self.utilization_peak)}
        return {key: value for key, value in fields.items() if value is not None}


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class GpuSampler:
    """Reads the selected devices' memory and utilization, one ``sample`` at a time.

    ``start`` takes the baseline (memory in use before the processor runs); the peak reported is
    the sum over devices of each device's largest reading above its baseline (for data-parallel
    work, where every device peaks together, the peak of the sum). A device whose reading fails
    keeps what it reported so far and is not read again (a lost GPU stays lost).
    """

    def __init__(self, selection: DeviceSelection,
                 load: Callable[[], ModuleType] = import_nvml) -> None:
        self._selection = selection
        self._load = load
        self._nvml: ModuleType | None = None
        self._baseline: dict[int, int] = {}  # position in _devices -> bytes used at start
        self._devices: list[Device] = []
        self._peaks: dict[int, int] = {}  # position -> largest reading above the baseline
        self._utilization_sum = 0.0
        self._utilization_samples = 0
        self._utilization_peak: float | None = None

    def start(self) -> bool:
        """Load NVML, find the devices and read their baseline; False if nothing can be read."""
        try:
            nvml = self._load()
        except ImportError as error:
            log.info("GPU usage not measured: %s (install nvidia-ml-py)", error)
            return False
        try:
            nvml.nvmlInit()
        except Exception as error:  # NVMLError, or OSError from ctypes without a driver library
            log.info("GPU usage not measured: NVML did not start: %s", error)
            return False
        self._nvml = nvml
        try:
            devices = resolve(nvml, self._selection)
        except nvml.NVMLError as error:
            log.warning("GPU usage not measured: NVML could not list the devices: %s", error)
            self._shutdown()
            return False
        for device in devices:
            try:
                used = int(nvml.nvmlDeviceGetMemoryInfo(device.handle).used)
            except nvml.NVMLError as error:
                log.warning("GPU %s not measured: %s", device.name, error)
                continue
            self._baseline[len(self._devices)] = used
            self._devices.append(device)
        if not self._devices:
            self._shutdown()
            return False
        log.debug("measuring GPUs %s (%s)", [d.name for d in self._devices],
                  self._selection.variable)
        return True

    def sample(self) -> None:
        """One reading of every device still answering."""
        nvml = self._nvml
        if nvml is None:
            return
        busy: list[float] = []
        for position, device in enumerate(self._devices):
            if position not in self._baseline:
                continue  # lost earlier
            try:
                used = int(nvml.nvmlDeviceGetMemoryInfo(device.handle).used)
                percent = self._utilization(nvml, device)
            except nvml.NVMLError as error:
                log.warning("GPU %s stopped answering, not read again: %s", device.name, error)
                del self._baseline[position]
                continue
            above = max(used - self._baseline[position], 0)
            self._peaks[position] = max(self._peaks.get(position, 0), above)
            if percent is not None:
                busy.append(percent / PERCENT)
        if busy:
            self._utilization_sum += sum(busy) / len(busy)
            self._utilization_samples += 1
            self._utilization_peak = max(self._utilization_peak or 0.0, *busy)

    @staticmethod
    def _utilization(nvml: ModuleType, device: Device) -> float | None:
        """Percent busy, or None where NVML does not report it (a MIG instance, some vGPUs)."""
        try:
            return float(nvml.nvmlDeviceGetUtilizationRates(device.handle).gpu)
        except nvml.NVMLError as error:
            if getattr(error, "value", None) == nvml.NVML_ERROR_NOT_SUPPORTED:
                return None
            raise

    def stop(self) -> GpuUsage | None:
        """A last reading, then the totals (None if no device was ever read after the start)."""
        if self._nvml is None:
            return None
        self.sample()
        self._shutdown()
        if not self._peaks:
            return None
        mean = (self._utilization_sum / self._utilization_samples
                if self._utilization_samples else None)
        return GpuUsage(len(self._devices), sum(self._peaks.values()), mean,
                        self._utilization_peak)

    def _shutdown(self) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is None:
            return
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as error:
            log.debug("NVML shutdown: %s", error)


def gpu_sampler(env: Mapping[str, str], load: Callable[[], ModuleType] = import_nvml
                ) -> GpuSampler | None:
    """A sampler for the GPUs ``env`` names, or None (and no import) when it names none."""
    selection = visible_devices(env)
    return GpuSampler(selection, load) if selection is not None else None

"""Check the worker's GPU usage report on a real GPU (issue 13); not part of `make test`.

From the repository root, on a machine with an NVIDIA GPU, PyTorch and nvidia-ml-py:

    PYTHONPATH=operator python3 tests/gpu/check_gpu_usage.py [--out report.json]

It runs the real worker (`python -m kubedag.worker run tests.gpu.processors:burn`) in a child
process, as a pod would, with the processor holding a known amount of GPU memory and multiplying
matrices for a few seconds, then reads the termination message and checks:

* the GPU fields are there (gpuDevices, gpuMemoryPeakBytes, gpuUtilizationPeak);
* reserved <= gpuMemoryPeakBytes <= 1.15 x reserved, where reserved is what PyTorch's caching
  allocator held at most (``torch.cuda.max_memory_reserved()``, returned by the processor): the
  worker sees all of it plus the CUDA context (~585 MiB on an H200), and nothing from before
  the attempt. The ballast (6 GiB by default) is chosen so that both bounds mean something:
  reserved comes to ~6.5 GiB, so the context puts the right answer near 1.09, while a sampler
  that forgot to subtract the pre-start baseline (~615 MiB in use on an idle H200) would report
  ~1.18 and fail. With 4 GiB the right answer is already 1.13 (measured, ../shared/gpu.md);
  with 8 GiB or more, a missing baseline would pass unnoticed.
* gpuUtilizationPeak > 0.5 (bf16 8192² products keep an H200 at ~100 %).

Exit status: 0 passed, 1 failed, 2 cannot run here (no GPU, no PyTorch, no nvidia-ml-py, or the
env hides every GPU), with one line saying which.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from kubedag.worker.gpu import CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES, visible_devices

REPO = Path(__file__).resolve().parents[2]
PROCESSOR = "tests.gpu.processors:burn"
UPPER_BOUND = 1.15  # reported peak / reserved
MIN_UTILIZATION_PEAK = 0.5
EXIT_PASSED, EXIT_FAILED, EXIT_CANNOT_RUN = 0, 1, 2
MIB = 2**20


class CannotRunError(Exception):
    """This machine cannot run the check (the message says why); not a failure of the worker."""


class Check(NamedTuple):
    name: str
    passed: bool
    detail: str


def worker_env(env: Mapping[str, str]) -> dict[str, str]:
    """The worker's env: this one, the repo importable, and a GPU named if none is.

    Outside a container neither variable may be set; then GPU 0 is named for both PyTorch and
    the worker (CUDA_VISIBLE_DEVICES), so that they look at the same device.
    """
    child = dict(env)
    if NVIDIA_VISIBLE_DEVICES not in child and CUDA_VISIBLE_DEVICES not in child:
        child[CUDA_VISIBLE_DEVICES] = "0"
    paths = [str(REPO / "operator"), str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    child["PYTHONPATH"] = os.pathsep.join(paths)
    child["PYTHONUNBUFFERED"] = "1"
    return child


def preflight(env: Mapping[str, str]) -> dict[str, Any]:
    """What the machine has (GPU names, memory in use now); CannotRunError if it lacks a need."""
    if visible_devices(env) is None:
        shown = {k: env.get(k) for k in (NVIDIA_VISIBLE_DEVICES, CUDA_VISIBLE_DEVICES)}
        raise CannotRunError(f"the environment makes no GPU visible to the worker: {shown}")
    if importlib.util.find_spec("torch") is None:
        raise CannotRunError("PyTorch is not installed here (the processor allocates with it)")
    if importlib.util.find_spec("pynvml") is None:
        raise CannotRunError("nvidia-ml-py (module pynvml) is not installed here")
    import pynvml  # noqa: PLC0415 - only once it is known to be there

    try:
        pynvml.nvmlInit()
    except Exception as error:  # NVMLError: no driver, no GPU
        raise CannotRunError(f"NVML cannot start, so there is no usable NVIDIA GPU: {error}"
                             ) from error
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            raise CannotRunError("NVML sees no GPU")
        gpus = []
        for index in range(count):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append({"index": index, "name": pynvml.nvmlDeviceGetName(handle),
                         "memoryUsedBytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)})
        return {"gpus": gpus, "driver": pynvml.nvmlSystemGetDriverVersion()}
    finally:
        pynvml.nvmlShutdown()


def run_worker(env: Mapping[str, str], params: Mapping[str, Any], timeout: float
               ) -> tuple[int, dict[str, Any], str]:
    """Run one attempt of the processor; its exit code, termination message and log."""
    with tempfile.TemporaryDirectory() as tmp:
        message = Path(tmp) / "termination-log"
        child = {**env, "KUBEDAG_PARAMS": json.dumps(dict(params)), "KUBEDAG_WORKSPACE": tmp}
        done = subprocess.run(
            [sys.executable, "-m", "kubedag.worker", "run", "--termination-path", str(message),
             PROCESSOR], env=child, cwd=REPO, capture_output=True, text=True, timeout=timeout,
            check=False)
        report = json.loads(message.read_text()) if message.exists() else {}
    return done.returncode, report, done.stderr


def judge(outputs: Mapping[str, Any], usage: Mapping[str, Any]) -> list[Check]:
    """The checks on one report: the processor's ``outputs``, the worker's ``usage``."""
    missing = [k for k in ("gpuDevices", "gpuMemoryPeakBytes", "gpuUtilizationPeak")
               if k not in usage]
    if missing:
        return [Check("GPU fields reported", False,
                      f"missing {missing}: the worker could not read the GPU (see its log)")]
    reserved = int(outputs.get("maxMemoryReserved") or 0)
    if reserved <= 0:
        return [Check("processor reported what it reserved", False,
                      f"maxMemoryReserved={outputs.get('maxMemoryReserved')!r}")]
    peak = int(usage["gpuMemoryPeakBytes"])
    ratio = peak / reserved
    utilization = float(usage["gpuUtilizationPeak"])
    overhead = f"{(peak - reserved) / MIB:+.0f} MiB over reserved"
    return [
        Check("GPU fields reported", True, f"{usage['gpuDevices']} device(s)"),
        Check("peak memory >= reserved", peak >= reserved,
              f"{peak} B >= {reserved} B ({overhead})"),
        Check(f"peak memory <= {UPPER_BOUND:.0%} of reserved", ratio <= UPPER_BOUND,
              f"ratio {ratio:.3f}"),
        Check(f"utilization peak > {MIN_UTILIZATION_PEAK:.0%}",
              utilization > MIN_UTILIZATION_PEAK, f"{utilization:.0%}"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the report (JSON) here")
    parser.add_argument("--ballast-gib", type=float, default=6.0,
                        help="GPU memory the processor holds besides its matrices")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of matmuls")
    parser.add_argument("--timeout", type=float, default=300.0, help="the worker's time limit")
    args = parser.parse_args(argv)
    env = worker_env(os.environ)
    try:
        machine = preflight(env)
    except CannotRunError as error:
        print(f"CANNOT RUN: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    params = {"ballastGiB": args.ballast_gib, "seconds": args.seconds}
    code, message, log = run_worker(env, params, args.timeout)
    outputs, usage = message.get("outputs") or {}, message.get("usage") or {}
    checks = ([Check("worker succeeded", False, f"exit {code}: {message.get('error')}")]
              if code != 0 else judge(outputs, usage))
    passed = all(c.passed for c in checks)
    report = {"passed": passed, "machine": machine, "params": params, "exitCode": code,
              "outputs": outputs, "usage": usage, "checks": [c._asdict() for c in checks],
              "visible": {k: env.get(k) for k in (NVIDIA_VISIBLE_DEVICES, CUDA_VISIBLE_DEVICES)}}
    if not passed:
        print(log, file=sys.stderr)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    for check in checks:
        print(f"{'PASS' if check.passed else 'FAIL'}  {check.name}: {check.detail}")
    return EXIT_PASSED if passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

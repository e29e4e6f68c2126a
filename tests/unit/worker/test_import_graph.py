"""The worker image holds only the worker runtime: its imports must never reach the operator's.

The image installs kubedag/__init__.py, kubedag/contract.py and kubedag/worker/ with psutil,
pypdf, networkx and nvidia-ml-py only (worker-image/constraints.txt). A fresh interpreter imports
every kubedag.worker module and the console script's entry point, then lists what got loaded.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[3]
FORBIDDEN = ("kubernetes", "kopf", "pydantic", "pydantic_core", "celpy", "yaml",
             "aiohttp", "prometheus_client")
WORKER_IMAGE_MODULES = ("kubedag", "kubedag.contract", "kubedag.worker")

PROBE = """
import importlib, json, pkgutil, sys
import kubedag.worker, kubedag.worker.cli
names = [m.name for m in pkgutil.walk_packages(kubedag.worker.__path__, "kubedag.worker.")
         if not m.name.endswith("__main__")]  # that one runs main()
for name in names:
    importlib.import_module(name)
from kubedag.worker.progress import sink_from_env
sink_from_env({})
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""


def _loaded() -> tuple[list[str], list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True,
        cwd=REPO, env={"PYTHONPATH": str(REPO / "operator"), "PATH": "/usr/bin:/bin"},
    )
    data = json.loads(done.stdout)
    return data["imported"], data["modules"]


def test_worker_modules_import_nothing_of_the_operator() -> None:
    imported, modules = _loaded()
    assert "kubedag.worker.processors.documents" in imported
    assert "kubedag.worker.progress" in imported
    tops = {m.split(".")[0] for m in modules}
    assert not tops & set(FORBIDDEN), sorted(tops & set(FORBIDDEN))
    kubedag = [m for m in modules if m.startswith("kubedag")]
    outside = [m for m in kubedag
               if m not in WORKER_IMAGE_MODULES and not m.startswith("kubedag.worker.")]
    assert not outside, f"not in the worker image: {outside}"
    # NVML (and the ctypes it pulls in) only once a worker that was given a GPU starts sampling.
    assert "pynvml" not in modules


def test_pdf_extraction_needs_only_pypdf() -> None:
    """The lazily imported pypdf is a worker dependency and imports nothing forbidden."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, pypdf, psutil; print(' '.join(sys.modules))"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    tops = {m.split(".")[0] for m in done.stdout.split()}
    assert not tops & set(FORBIDDEN)


def test_worker_constraints_pin_exactly_the_worker_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r).name.lower(): Requirement(r) for r in
                [*project["dependencies"], *project["optional-dependencies"]["worker"]]}
    pins = {}
    for line in (REPO / "worker-image" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip()).groups()  # type: ignore[union-attr]
            pins[name.lower()] = version
    assert set(pins) == {"psutil", "pypdf", "networkx", "nvidia-ml-py"}
    for name, version in pins.items():
        assert name in declared, f"{name} is pinned for the worker image but not declared"
        assert declared[name].specifier.contains(version), (name, version)
    dockerfile = (REPO / "worker-image" / "Dockerfile").read_text()
    assert "--constraint constraints.txt psutil pypdf networkx nvidia-ml-py" in dockerfile
    assert "pip install --no-deps /src" in dockerfile


def test_operator_constraints_pin_every_package_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (REPO / "operator-image" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            pins[name.lower().replace("_", "-")] = version
    for requirement in map(Requirement, project["dependencies"]):
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in operator-image/constraints.txt"
        assert requirement.specifier.contains(pins[name]), (name, pins[name])

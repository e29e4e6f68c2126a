"""Rendering the Helm chart and running Prometheus' tools, for the chart and metrics tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.integration.support import Cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubedag"


def render(cluster: Cluster, release: str, namespace: str, *values: str) -> list[dict[str, Any]]:
    """`helm template` with ``--set`` values; the documents, without CRDs."""
    args = [f"--set={v}" for v in values]
    text = cluster.helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def ensure_prometheus() -> tuple[str, str]:
    """Paths of prometheus and promtool, installing them if missing; fails (never skips)."""
    result = subprocess.run(["bash", str(REPO / "hack" / "ensure-prometheus.sh")],
                            capture_output=True, text=True, timeout=600, check=False)
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if result.returncode != 0 or not prometheus or not promtool:
        raise AssertionError(
            "prometheus/promtool are needed and could not be installed by "
            f"hack/ensure-prometheus.sh (exit {result.returncode}):\n{result.stderr}")
    return prometheus, promtool

"""Rendering the Helm chart and running Prometheus' tools, for the chart and metrics tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubedag.testbed.versions import Versions
from tests.integration.support import Cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubedag"


def render(cluster: Cluster, release: str, namespace: str, *values: str) -> list[dict[str, Any]]:
    """`helm template` with ``--set`` values; the documents, without CRDs."""
    args = [f"--set={v}" for v in values]
    text = cluster.helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def ensure_prometheus() -> tuple[str, str]:
    """Paths of prometheus and promtool, built at the pinned version by `make cluster-bin`
    (with Kubernetes service discovery, which Debian's package lacks); fails, never skips."""
    bin_dir = Versions.pinned().bin_dir()
    prometheus, promtool = bin_dir / "prometheus", bin_dir / "promtool"
    if not (prometheus.is_file() and promtool.is_file()):
        raise AssertionError(f"prometheus/promtool missing from {bin_dir}: run `make cluster-bin`")
    return str(prometheus), str(promtool)

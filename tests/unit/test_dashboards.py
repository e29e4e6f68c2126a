"""The chart's dashboards are what kubedag.dashboards generates, and follow Grafana conventions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kubedag.dashboards import main, panel_queries, rendered

CHART_DASHBOARDS = Path(__file__).resolve().parents[2] / "charts" / "kubedag" / "dashboards"


def test_chart_dashboards_are_up_to_date() -> None:
    for name, text in rendered().items():
        path = CHART_DASHBOARDS / name
        assert path.exists(), f"{path} is missing; run `python -m kubedag.dashboards`"
        assert path.read_text() == text, (
            f"{path} is out of date; run `python -m kubedag.dashboards`")


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    stale = tmp_path / "kubedag-overview.json"
    stale.write_text(stale.read_text().replace("kubedag_runs", "kubedag_rums"))
    assert main(["--out", str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize("name", sorted(rendered()))
def test_dashboard_conventions(name: str) -> None:
    dashboard = json.loads(rendered()[name])
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"].startswith("kubedag-")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "pipeline"} <= set(variables)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    # No datasource UID other than the variable, anywhere.
    uids = set(re.findall(r'"uid": "([^"]*)"', rendered()[name])) - {dashboard["uid"]}
    assert uids == {"${datasource}"}


def test_every_query_is_filtered_and_uses_kubedag_series() -> None:
    for name, text in rendered().items():
        for title, expr in panel_queries(json.loads(text)):
            assert "kubedag_" in expr, (name, title)
            if "kubedag_circuit_" in expr:  # a breaker belongs to a namespace, no pipeline
                assert "$namespace" in expr, (name, title, expr)
            elif "kubedag_reconcile" not in expr and "kubedag_kube_api" not in expr:
                assert "$namespace" in expr and "$pipeline" in expr, (name, title, expr)

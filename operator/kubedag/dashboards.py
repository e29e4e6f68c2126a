"""Grafana dashboards for kubedag's metrics, generated with grafana-foundation-sdk.

    python -m kubedag.dashboards --out charts/kubedag/dashboards/          # write
    python -m kubedag.dashboards --out charts/kubedag/dashboards/ --check  # fail if stale

Two dashboards: an overview (all namespaces and pipelines, operator health) and a per-pipeline
drill-down (stages, retries, failures, worker-reported usage). Every panel queries the data
source chosen in the `datasource` variable (no hard-coded UID), and is filtered by the
`namespace` and `pipeline` variables. The chart ships the JSON as ConfigMaps labelled
`grafana_dashboard: "1"`; a unit test fails when the files in the chart are out of date.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from kubedag.generated import write_or_check

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
SELECTOR = 'namespace=~"$namespace", pipeline=~"$pipeline"'
RATE = "$__rate_interval"
ACTIVE = 'phase=~"Pending|Running|Paused"'
# The operator's process metrics carry no kubedag labels: pick the operator's instances by a
# series only it exports.
OPERATOR = "and on (job, instance) kubedag_reconcile_duration_seconds_count"

Panel = Any  # a panel builder (timeseries, stat, table)


def _query(expr: str, legend: str = "", *, instant: bool = False) -> prom.Dataquery:
    query = prom.Dataquery().expr(expr).legend_format(legend or "__auto")
    return query.instant() if instant else query.range()


def _panel(builder: Panel, title: str, unit: str, description: str, *queries: prom.Dataquery,
           width: int = 8, height: int = 8) -> Panel:
    panel = (builder.title(title).description(description).unit(unit).datasource(DATASOURCE)
             .span(width).height(height))
    for ref, query in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(query.ref_id(ref))
    return panel


def _series(title: str, unit: str, description: str, *queries: prom.Dataquery,
            width: int = 8, stack: bool = False) -> Panel:
    panel = timeseries.Panel().fill_opacity(10 if not stack else 40)
    if stack:
        panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    return _panel(panel, title, unit, description, *queries, width=width)


def _stat(title: str, unit: str, description: str, expr: str) -> Panel:
    return _panel(stat.Panel(), title, unit, description, _query(expr, instant=True),
                  width=6, height=4)


def _quantile(q: float, metric: str, by: str, selector: str) -> str:
    return (f"histogram_quantile({q}, sum by (le, {by}) "
            f"(rate({metric}_bucket{{{selector}}}[{RATE}])))")


def _mean_per_attempt(histogram: str, selector: str) -> str:
    """The mean observation of ``histogram`` per stage over the dashboard's time range."""
    return (f"sum by (stage) (increase({histogram}_sum{{{selector}}}[$__range])) / "
            f"sum by (stage) (increase({histogram}_count{{{selector}}}[$__range]))")


def _variables(*, multi: bool) -> list[db.QueryVariable | db.DatasourceVariable]:
    def query_variable(name: str, label: str, query: str) -> db.QueryVariable:
        variable = (db.QueryVariable(name).label(label).datasource(DATASOURCE).query(query)
                    .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(
                        dm.VariableSort.ALPHABETICAL_ASC))
        if multi:
            variable = variable.multi(True).include_all(True).all_value(".*")
        return variable

    return [
        db.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        query_variable("namespace", "Namespace", "label_values(kubedag_runs, namespace)"),
        query_variable("pipeline", "Pipeline",
                       'label_values(kubedag_runs{namespace=~"$namespace"}, pipeline)'),
    ]


def _dashboard(uid: str, title: str, description: str, *, multi: bool) -> db.Dashboard:
    dashboard = (db.Dashboard(title).uid(uid).description(description)
                 .tags(["kubedag", "kubernetes", "pipelines"]).refresh("30s")
                 .time("now-6h", "now").timezone("browser").editable()
                 .tooltip(dm.DashboardCursorSync.CROSSHAIR))
    for variable in _variables(multi=multi):
        dashboard = dashboard.with_variable(variable)
    return dashboard


def _with(dashboard: db.Dashboard, rows: list[tuple[str, list[Panel]]]) -> dict[str, Any]:
    panel_id = 0
    for row, panels in rows:
        panel_id += 1
        dashboard = dashboard.with_row(db.Row(row).id(panel_id))
        for panel in panels:
            panel_id += 1
            dashboard = dashboard.with_panel(panel.id(panel_id))
    encoded: dict[str, Any] = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    return encoded


# Circuit breakers belong to a namespace, not to a pipeline: filtered by namespace only.
BREAKER_SELECTOR = 'namespace=~"$namespace"'


def _circuit_breaker_panels() -> list[Panel]:
    sel = BREAKER_SELECTOR
    return [
        _series("Circuit breakers", "short",
                "State of each circuit breaker (0 closed, 1 half-open, 2 open), by namespace "
                "and key: `kubectl get circuitbreakers` for the details.",
                _query(f"max by (namespace, key) (kubedag_circuit_state{{{sel}}})",
                       "{{namespace}}/{{key}}")),
        _series("Stages held by circuit breakers, and trips", "short",
                "Stages waiting on an open breaker now (Pending or Retrying, reason "
                "CircuitOpen), and breakers tripping, by key.",
                _query(f"sum by (key) (kubedag_circuit_held_stages{{{sel}}})", "held {{key}}"),
                _query(f"sum by (key) (increase(kubedag_circuit_trips_total{{{sel}}}"
                       f"[{RATE}]))", "trips {{key}}")),
    ]


def overview() -> dict[str, Any]:
    sel = SELECTOR
    rows: list[tuple[str, list[Panel]]] = [
        ("Runs", [
            _stat("Active runs", "short", "Runs pending, running or paused.",
                  f"sum(kubedag_runs{{{sel}, {ACTIVE}}})"),
            _stat("Runs finished", "short", "Runs that finished in the selected time range.",
                  f"sum(increase(kubedag_run_duration_seconds_count{{{sel}}}[$__range]))"),
            _stat("Run success ratio", "percentunit",
                  "Succeeded / all finished runs in the selected time range.",
                  f'sum(increase(kubedag_run_duration_seconds_count{{{sel}, '
                  f'outcome="Succeeded"}}[$__range])) / sum(increase('
                  f"kubedag_run_duration_seconds_count{{{sel}}}[$__range]))"),
            _stat("Stages running", "short", "Stages whose Job is running now.",
                  f"sum(kubedag_stages_running{{{sel}}})"),
            _series("Runs by phase", "short", "PipelineRuns that exist, by phase.",
                    _query(f"sum by (phase) (kubedag_runs{{{sel}}})", "{{phase}}")),
            _series("Runs finishing by outcome", "ops", "Runs finishing per second, by outcome.",
                    _query(f"sum by (outcome) (rate(kubedag_run_duration_seconds_count"
                           f"{{{sel}}}[{RATE}]))", "{{outcome}}")),
            _series("Run duration (p50, p95)", "s",
                    "Quantiles of finished runs' duration, by pipeline.",
                    _query(_quantile(0.5, "kubedag_run_duration_seconds", "pipeline", sel),
                           "p50 {{pipeline}}"),
                    _query(_quantile(0.95, "kubedag_run_duration_seconds", "pipeline", sel),
                           "p95 {{pipeline}}")),
        ]),
        ("Stages", [
            _series("Stages running, queued and pending", "short",
                    "Stages of active runs: running (Job exists), queued (Job waits for Kueue "
                    "to admit it) and waiting to start or retry.",
                    _query(f"sum(kubedag_stages_running{{{sel}}})", "running"),
                    _query(f"sum(kubedag_stages_queued{{{sel}}})", "queued"),
                    _query(f"sum(kubedag_stages_pending{{{sel}}})", "pending")),
            _series("Stage attempts and retries", "ops", "Stage attempts started per second.",
                    _query(f"sum(rate(kubedag_stage_attempts_total{{{sel}}}[{RATE}]))",
                           "attempts"),
                    _query(f"sum(rate(kubedag_stage_retries_total{{{sel}}}[{RATE}]))",
                           "retries")),
            _series("Stage failures by reason", "ops",
                    "Failed stage attempts per second, by reason (ExitCode, Timeout, ...).",
                    _query(f"sum by (reason) (rate(kubedag_stage_failures_total{{{sel}}}"
                           f"[{RATE}]))", "{{reason}}")),
            _series("Stages waiting for a node", "short",
                    "Stages whose pods the scheduler cannot place on any node now (phase "
                    "Pending, reason Unschedulable), by pipeline: too large for every node, "
                    "or the cluster is full. `kubectl describe` the run for the scheduler's "
                    "message.",
                    _query(f"sum by (pipeline) (kubedag_stages_unschedulable{{{sel}}})",
                           "{{pipeline}}")),
            _series("Stage queue time (p50, p95)", "s",
                    "How long stage Jobs waited for Kueue to admit them (runs with a "
                    "queueName), by pipeline; run time is apart (Stage duration).",
                    _query(_quantile(0.5, "kubedag_stage_queue_seconds", "pipeline", sel),
                           "p50 {{pipeline}}"),
                    _query(_quantile(0.95, "kubedag_stage_queue_seconds", "pipeline", sel),
                           "p95 {{pipeline}}")),
            *_circuit_breaker_panels(),
        ]),
        ("Stage cache", [
            _stat("Cache hit ratio", "percentunit",
                  "Hits / lookups of cacheable stages in the selected time range.",
                  f'sum(increase(kubedag_cache_lookups_total{{{sel}, result="hit"}}'
                  f"[$__range])) / sum(increase(kubedag_cache_lookups_total{{{sel}}}"
                  "[$__range]))"),
            _series("Cache lookups by result and reason", "ops",
                    "Lookups per second: hits, and misses by reason (NoEntry, Changed: an "
                    "input changed, NoDigest: a new image, Expired, Disabled, Overwrite). "
                    "`kubedag explain RUN` says what changed.",
                    _query(f"sum by (result, reason) (rate(kubedag_cache_lookups_total"
                           f"{{{sel}}}[{RATE}]))", "{{result}} {{reason}}")),
            _series("Cache entries", "short",
                    "StageCacheEntry objects (cached stage results), by pipeline.",
                    _query(f"sum by (pipeline) (kubedag_cache_entries{{{sel}}})",
                           "{{pipeline}}")),
        ]),
        ("Resources requested by running stages", [
            _series("CPU", "short", "CPU cores requested by the pods of running stages.",
                    _query(f"sum by (pipeline) (kubedag_running_stages_cpu_request_cores"
                           f"{{{sel}}})", "{{pipeline}}"), stack=True),
            _series("Memory", "bytes", "Memory requested by the pods of running stages.",
                    _query(f"sum by (pipeline) (kubedag_running_stages_memory_request_bytes"
                           f"{{{sel}}})", "{{pipeline}}"), stack=True),
            _series("GPUs", "short", "GPUs requested by the pods of running stages.",
                    _query(f"sum by (pipeline) (kubedag_running_stages_gpu_request{{{sel}}})",
                           "{{pipeline}}"), stack=True),
        ]),
        ("Operator", [
            _series("Reconcile duration (p50, p99)", "s",
                    "Time one reconcile of one run takes.",
                    _query(_quantile(0.5, "kubedag_reconcile_duration_seconds", "job", ""),
                           "p50"),
                    _query(_quantile(0.99, "kubedag_reconcile_duration_seconds", "job", ""),
                           "p99"), width=6),
            _series("Reconciles and errors", "ops", "Reconciles per second, and failed ones.",
                    _query(f"sum(rate(kubedag_reconcile_duration_seconds_count[{RATE}]))",
                           "reconciles"),
                    _query(f"sum(rate(kubedag_reconcile_errors_total[{RATE}]))", "errors"),
                    width=6),
            _series("API writes by verb and resource", "ops",
                    "Write requests the operator sends to the Kubernetes API.",
                    _query(f"sum by (verb, resource) (rate(kubedag_kube_api_writes_total"
                           f"[{RATE}]))", "{{verb}} {{resource}}"), width=6),
            _series("Operator CPU and memory", "short",
                    "CPU cores used and resident memory (right) of the operator process.",
                    _query(f"rate(process_cpu_seconds_total[{RATE}]) {OPERATOR}",
                           "cpu {{instance}}"),
                    _query(f"process_resident_memory_bytes {OPERATOR}",
                           "memory {{instance}}"), width=6)
            .override_by_regexp("memory.*", [
                dm.DynamicConfigValue(id_val="unit", value="bytes"),
                dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right")]),
        ]),
    ]
    return _with(_dashboard("kubedag-overview", "kubedag / Overview",
                            "PipelineRuns, stages, requested resources and operator health.",
                            multi=True), rows)


def pipeline() -> dict[str, Any]:
    sel = 'namespace="$namespace", pipeline="$pipeline"'
    stage_sel = f'{sel}, stage=~"$stage"'
    rows: list[tuple[str, list[Panel]]] = [
        ("Runs of $pipeline", [
            _stat("Active runs", "short", "Runs pending, running or paused.",
                  f"sum(kubedag_runs{{{sel}, {ACTIVE}}})"),
            _stat("Failed runs", "short", "Runs that failed in the selected time range.",
                  f'sum(increase(kubedag_run_duration_seconds_count{{{sel}, outcome="Failed"}}'
                  f"[$__range]))"),
            _stat("Run duration p95", "s", "95th percentile of finished runs' duration.",
                  f"histogram_quantile(0.95, sum by (le) (increase("
                  f"kubedag_run_duration_seconds_bucket{{{sel}}}[$__range])))"),
            _stat("Stages pending", "short", "Stages of active runs waiting to start or retry.",
                  f"sum(kubedag_stages_pending{{{sel}}})"),
            _panel(table.Panel(), "Progress of active runs", "percentunit",
                   "Finished stages / all stages of each run that has not finished.",
                   _query(f"kubedag_run_progress_ratio{{{sel}}}", "{{run}}", instant=True),
                   width=12),
            _series("Runs by phase", "short", "PipelineRuns of this pipeline, by phase.",
                    _query(f"sum by (phase) (kubedag_runs{{{sel}}})", "{{phase}}"), width=12),
        ]),
        ("Stages", [
            _series("Stage duration p95", "s",
                    "95th percentile of finished stages' duration (retries included), by stage.",
                    _query(_quantile(0.95, "kubedag_stage_duration_seconds", "stage",
                                     stage_sel), "{{stage}}"), width=12),
            _series("Stage queue time p95", "s",
                    "95th percentile of the time a stage's Job waited for Kueue to admit it, "
                    "by stage (not part of its duration).",
                    _query(_quantile(0.95, "kubedag_stage_queue_seconds", "stage",
                                     stage_sel), "{{stage}}"), width=12),
            _series("Attempts and retries by stage", "ops", "Attempts started per second.",
                    _query(f"sum by (stage) (rate(kubedag_stage_attempts_total{{{stage_sel}}}"
                           f"[{RATE}]))", "attempts {{stage}}"),
                    _query(f"sum by (stage) (rate(kubedag_stage_retries_total{{{stage_sel}}}"
                           f"[{RATE}]))", "retries {{stage}}"), width=12),
            _series("Failures by stage and reason", "ops",
                    "Failed attempts per second, by stage and reason.",
                    _query(f"sum by (stage, reason) (rate(kubedag_stage_failures_total"
                           f"{{{stage_sel}}}[{RATE}]))", "{{stage}}: {{reason}}"), width=12),
            _series("Fallbacks by stage and outcome", "ops",
                    "Stage fallbacks per second, by stage and outcome: Started (the stage failed "
                    "for good), Succeeded (recovered), Failed, Cancelled.",
                    _query(f"sum by (stage, outcome) (rate(kubedag_fallbacks_total"
                           f"{{{stage_sel}}}[{RATE}]))", "{{stage}}: {{outcome}}"), width=12),
            _series("Stages running, queued and pending", "short",
                    "Stages of this pipeline's runs (queued: waiting for Kueue's admission).",
                    _query(f"sum(kubedag_stages_running{{{sel}}})", "running"),
                    _query(f"sum(kubedag_stages_queued{{{sel}}})", "queued"),
                    _query(f"sum(kubedag_stages_pending{{{sel}}})", "pending"), width=12),
            _series("Stages waiting for a node", "short",
                    "Stages of this pipeline's runs whose pods the scheduler cannot place on "
                    "any node now (phase Pending, reason Unschedulable).",
                    _query(f"sum(kubedag_stages_unschedulable{{{sel}}})", "unschedulable"),
                    width=12),
        ]),
        ("Usage reported by workers, and requests", [
            _series("CPU time per attempt", "s",
                    "Average CPU seconds a stage attempt used, as its worker reported.",
                    _query(_mean_per_attempt("kubedag_stage_cpu_seconds", stage_sel),
                           "{{stage}}")),
            _series("Peak memory per attempt", "bytes",
                    "Average peak resident memory of a stage attempt, as its worker reported.",
                    _query(_mean_per_attempt("kubedag_stage_peak_memory_bytes", stage_sel),
                           "{{stage}}")),
            _series("GPU memory peak per attempt", "bytes",
                    "Average peak GPU memory of a stage attempt above what was in use before it "
                    "started, over its pod's GPUs (CUDA context included), as its worker "
                    "measured it through NVML. Stages without a GPU reading have no series.",
                    _query(_mean_per_attempt("kubedag_stage_gpu_memory_peak_bytes", stage_sel),
                           "{{stage}}")),
            _series("GPU utilization per attempt", "percentunit",
                    "Average of stage attempts' mean GPU utilization (the share of time a kernel "
                    "ran, as NVML reports it), as their workers measured it; low values mean "
                    "GPUs held but idle.",
                    _query(_mean_per_attempt("kubedag_stage_gpu_utilization_ratio", stage_sel),
                           "{{stage}}")),
            _series("Requested by running stages", "short",
                    "CPU cores and GPUs requested by this pipeline's running stages; memory "
                    "(bytes) on the right.",
                    _query(f"sum(kubedag_running_stages_cpu_request_cores{{{sel}}})", "cpu"),
                    _query(f"sum(kubedag_running_stages_gpu_request{{{sel}}})", "gpu"),
                    _query(f"sum(kubedag_running_stages_memory_request_bytes{{{sel}}})",
                           "memory"))
            .override_by_name("memory", [
                dm.DynamicConfigValue(id_val="unit", value="bytes"),
                dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right")]),
        ]),
    ]
    dashboard = _dashboard("kubedag-pipeline", "kubedag / Pipeline",
                           "One pipeline: its runs, stages, retries, failures and usage.",
                           multi=False)
    dashboard = dashboard.with_variable(
        db.QueryVariable("stage").label("Stage").datasource(DATASOURCE)
        .query('label_values(kubedag_stage_attempts_total{namespace="$namespace", '
               'pipeline="$pipeline"}, stage)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True).all_value(".*"))
    return _with(dashboard, rows)


DASHBOARDS = {"kubedag-overview.json": overview, "kubedag-pipeline.json": pipeline}


def rendered() -> dict[str, str]:
    """File name -> dashboard JSON text (stable: sorted keys, trailing newline)."""
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n"
            for name, build in DASHBOARDS.items()}


def panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets") or []:
            yield panel["title"], target["expr"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubedag.dashboards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("charts/kubedag/dashboards"))
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail with a diff if out of date")
    args = parser.parse_args(argv)
    return write_or_check(rendered(), args.out, check=args.check, regenerate="make dashboards")


if __name__ == "__main__":
    sys.exit(main())

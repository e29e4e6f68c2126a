"""`python -m bench`: start a local control plane and the operator, run each scenario first as
the floor (a bare Job-creating script), then as the same script creating kubedag's own Jobs,
then through kubedag, print a table and write bench/results/<timestamp>.json.

Options: --only chain,fanout,lattice,concurrent,many (`many`, 1,000 runs of 10 stages, runs
only when named); --runs N (concurrent runs, default 100);
--no-floor; --profile (py-spy on the operator, collapsed stacks next to the JSON);
--real-node (the chain on the test bed's real node: real containers of the worker image running
`true`, for kubedag and the floor alike; needs Linux and root, builds the images if needed)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bench import dags as shapes
from bench.dags import Dag
from bench.floor import FloorKind, run_floor
from bench.kube import get_json, request_totals
from bench.measure import CpuLedger, Daemon, ProcessSampler, Profiler, Recorder, percentile
from kubedag.api import PipelineSpec
from kubedag.shell.events import FLUSH_SPACING
from kubedag.testbed import ControlPlane, start_control_plane
from kubedag.testbed.cluster import free_ports
from kubedag.testbed.images import ensure_images
from kubedag.testbed.realnode import RealNode, start_real_node

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
GROUP, VERSION = "kubedag.io", "v1alpha1"
OPERATOR_WRITE_RESOURCES = {("POST", "jobs", ""), ("DELETE", "jobs", ""),
                            ("PATCH", "pipelineruns", "status"), ("PUT", "pipelineruns", "status"),
                            ("DELETE", "pipelineruns", "")}
# Targets (reported, not asserted).
TARGET_P50, TARGET_P99, TARGET_WRITES = 0.3, 1.5, 3.0
TARGET_RSS_MIB, TARGET_STATUS_BYTES = 150, 256 * 1024
# Wall time as a ratio to the floor measured in the same run (issue 15).
TARGET_RATIOS = {"chain": 1.2, "lattice": 1.15, "fanout": 1.05, "concurrent": 1.05}
TARGET_CPU_MS_PER_STAGE = 5.0
# The scenario of 1,000 runs: it keeps up, each dependency's end → the next Job within 2 s.
TARGET_MANY_P99 = 2.0
WORKER_IMAGE = "ghcr.io/kubedag/worker:0.1.0"
LATENCY_TAIL = 30  # the slowest reactions kept in the JSON, with their times


@dataclass
class Scenario:
    name: str
    dag: Dag
    runs: int = 1
    timeout: float = 900
    # Run by default; else only when named with --only.
    default: bool = True

    @property
    def stages(self) -> int:
        return len(self.dag) * self.runs

    def run_names(self) -> list[str]:
        return [self.name] if self.runs == 1 else [f"{self.name}-{i:03d}" for i in range(self.runs)]


def scenarios(concurrent_runs: int) -> list[Scenario]:
    return [
        Scenario("chain", shapes.chain(100)),
        Scenario("fanout", shapes.fan_out(982, 16)),
        Scenario("lattice", shapes.lattice(30, 30)),
        Scenario("concurrent", shapes.layered([1, 6, 6, 6, 1]), runs=concurrent_runs),
        # 10,000 stages: about half an hour on 2 cores, so only with --only many.
        Scenario("many", shapes.layered([1, 4, 4, 1]), runs=1000, timeout=2400,
                 default=False),
    ]


class Operator(Daemon):
    def __init__(self, plane: ControlPlane) -> None:
        env = plane.env()
        env["PYTHONUNBUFFERED"] = "1"
        [self.metrics_port] = free_ports(1)
        env["KUBEDAG_METRICS_PORT"] = str(self.metrics_port)
        super().__init__([sys.executable, "-m", "kubedag.shell.main", "--liveness", ""], env,
                         plane.log_dir / "kubedag-operator.log", "startup' succeeded")

    def passes(self) -> tuple[float, float]:
        """Reconcile passes so far and the seconds they took (I/O included), from the
        operator's own /metrics: the count that, with its CPU, says what a pass costs."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=10) as response:
            text = response.read().decode()
        values = {name: float(value) for name, value in
                  (line.split()[:2] for line in text.splitlines()
                   if line.startswith("kubedag_reconcile_duration_seconds_"))
                  if name.endswith(("_count", "_sum"))}
        return (values.get("kubedag_reconcile_duration_seconds_count", 0.0),
                values.get("kubedag_reconcile_duration_seconds_sum", 0.0))


class Bench:
    def __init__(self, plane: ControlPlane, operator: Operator, args: argparse.Namespace) -> None:
        self.plane, self.operator, self.args = plane, operator, args
        self.api = plane.api_client()
        self.core = k8s.CoreV1Api(self.api)
        self.custom = k8s.CustomObjectsApi(self.api)
        self.sampler = ProcessSampler(operator.process.pid)
        self.cpu = CpuLedger({**plane.pids, "operator": operator.process.pid})
        self.placement = plane.pod_placement()
        # What each stage's container runs: kwok needs only an image name; on the real node a
        # real image runs a real (trivial) command.
        self.container: dict[str, Any] = {"image": "busybox"}

    def use_real_node(self, placement: dict[str, Any], image: str) -> None:
        self.placement = placement
        self.container = {"image": image, "command": ["true"]}

    def namespace(self, name: str) -> str:
        self.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # pods are refused until `default` exists
            try:
                self.core.read_namespaced_service_account("default", name)
                return name
            except ApiException:
                time.sleep(0.1)
        raise RuntimeError(f"namespace {name} has no default ServiceAccount")

    def delete_namespace(self, name: str, timeout: float = 300) -> None:
        self.core.delete_namespace(name, propagation_policy="Background")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.core.read_namespace(name)
            except ApiException as error:
                if error.status == 404:
                    return
            time.sleep(0.5)
        print(f"  (namespace {name} still terminating after {timeout} s)", flush=True)

    def pipeline_spec(self, scenario: Scenario) -> dict[str, Any]:
        """The inline pipeline every run of ``scenario`` carries: one stage per DAG node."""
        return {"stages": [{"name": s, **self.container, **({"dependsOn": d} if d else {})}
                           for s, d in scenario.dag.items()],
                "defaults": {"nodeSelector": self.placement["nodeSelector"],
                             "tolerations": self.placement["tolerations"]}}

    def floor(self, scenario: Scenario, kind: FloorKind = "jobs") -> dict[str, Any]:
        """``kind`` "kubedag": the floor script creating kubedag's own Jobs (bench/floor.py)."""
        ns = self.namespace(f"bench-{scenario.name}-floor" + ("-kubedag" if kind == "kubedag"
                                                                else ""))
        recorder = Recorder(self.api, ns, runs=False)
        dags = dict.fromkeys(scenario.run_names(), scenario.dag)
        self.cpu.begin()
        try:
            wall = run_floor(self.api, ns, dags, self.placement, scenario.timeout,
                             self.container, kind=kind,
                             pipeline=(PipelineSpec.model_validate(self.pipeline_spec(scenario))
                                       if kind == "kubedag" else None))
            time.sleep(0.3)
            cpu = self.cpu.end()
            latencies = recorder.latencies(dags)
            job_to_pod = recorder.job_to_pod()
        finally:
            recorder.stop()
            self.delete_namespace(ns)
        return {"wall_seconds": round(wall, 2), **_latency_summary(latencies),
                "job_to_pod_p50": _r(percentile(job_to_pod, 0.5)),
                "job_to_pod_p99": _r(percentile(job_to_pod, 0.99)),
                "cpu_seconds_by_process": cpu}

    def kubedag(self, scenario: Scenario) -> dict[str, Any]:
        ns = self.namespace(f"bench-{scenario.name}")
        recorder = Recorder(self.api, ns, runs=True)
        dags = dict.fromkeys(scenario.run_names(), scenario.dag)
        spec = {"pipelineSpec": self.pipeline_spec(scenario)}
        profiler = None
        if self.args.profile:
            py_spy = Path(sys.executable).parent / "py-spy"
            profiler = Profiler(py_spy, self.operator.process.pid,
                                self.args.profile_dir / f"{scenario.name}.collapsed")
        before = request_totals(self.api)
        passes_before = self.operator.passes()
        self.sampler.begin()
        self.cpu.begin()

        def create(name: str) -> None:
            body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PipelineRun",
                    "metadata": {"name": name}, "spec": spec}
            self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "pipelineruns", body,
                                                        _preload_content=False)

        start = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, dags))
        created = time.monotonic()
        deadline = start + scenario.timeout
        while len(recorder.run_done) < len(dags) and time.monotonic() < deadline:
            if self.operator.process.poll() is not None:
                raise RuntimeError(f"the operator exited ({self.operator.process.returncode}) "
                                   f"during {scenario.name}; log: {self.operator.log}")
            time.sleep(0.05)
        # Trailing writes: a run's last Events may wait a whole spacing (kubedag.shell.events).
        time.sleep(FLUSH_SPACING + 1)
        process = self.sampler.end()
        cpu = self.cpu.end()
        passes_after = self.operator.passes()
        process["passes"] = int(passes_after[0] - passes_before[0])
        process["pass_seconds"] = round(passes_after[1] - passes_before[1], 2)
        after = request_totals(self.api)
        if profiler:
            profiler.stop()
        watch_errors = recorder.stop()
        phases = Counter(phase for phase, _ in recorder.run_done.values())
        ends = [at for _, at in recorder.run_done.values()]
        per_run = sorted(at - start for at in ends)
        delta = after - before
        by_verb: Counter[str] = Counter()
        for (verb, _, _, dry_run), count in delta.items():
            by_verb[verb + (" (dry-run)" if dry_run else "")] += count
        operator_writes = sum(count for (verb, res, sub, dry), count in delta.items()
                              if (verb, res, sub) in OPERATOR_WRITE_RESOURCES and not dry)
        events = self.operator_events(ns)
        sizes = [len(json.dumps(get_json(
            self.api, f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/pipelineruns/{name}"
        ).get("status") or {}, separators=(",", ":"))) for name in list(dags)[:5]]
        duplicates = sum(1 for c in recorder.jobs_created.values() if c > 1)
        result = {
            "wall_seconds": round(max(ends) - start, 2) if ends else None,
            "complete": len(recorder.run_done) == len(dags),
            "phases": dict(phases),
            "create_seconds": round(created - start, 2),
            "run_wall_p50": _r(percentile(per_run, 0.5)),
            "run_wall_p99": _r(percentile(per_run, 0.99)),
            **_latency_summary(recorder.latencies(dags)),
            # When the slowest reactions happened (seconds after the first run was created):
            # one stall or a spread.
            "latency_tail": [[_r(at - start, 1), _r(latency)] for at, latency in sorted(
                recorder.timed_latencies(dags), key=lambda t: -t[1])[:LATENCY_TAIL]],
            "job_to_pod_p50": _r(percentile(recorder.job_to_pod(), 0.5)),
            "job_to_pod_p99": _r(percentile(recorder.job_to_pod(), 0.99)),
            "first_job_seconds": _r(min(recorder.job_seen.values(), default=start) - start),
            "requests_by_verb": dict(sorted(by_verb.items())),
            "requests_total": sum(by_verb.values()),
            "operator_writes": {
                "jobs_created": delta[("POST", "jobs", "", "")],
                "status_patches": delta[("PATCH", "pipelineruns", "status", "")],
                "events": events,
                "total": operator_writes + events,
                "per_stage": round((operator_writes + events) / scenario.stages, 2),
            },
            "jobs_created_twice": duplicates,
            "operator": process,
            "status_bytes": max(sizes) if sizes else None,
            # Includes the trailing wait for the last Events (FLUSH_SPACING + 1 s).
            "cpu_seconds_by_process": cpu,
            "watch_errors": watch_errors[:5],
        }
        self.delete_namespace(ns)
        return result

    def operator_events(self, namespace: str) -> int:
        items = get_json(self.api, f"/api/v1/namespaces/{namespace}/events")["items"]
        return sum(1 for e in items if (e.get("reportingComponent") == "kubedag-operator"
                                        or (e.get("source") or {}).get("component")
                                        == "kubedag-operator"))


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _latency_summary(latencies: list[float]) -> dict[str, Any]:
    return {"latency_p50": _r(percentile(latencies, 0.5)),
            "latency_p99": _r(percentile(latencies, 0.99)),
            "latency_max": _r(max(latencies) if latencies else None),
            "latency_samples": len(latencies)}


def _fmt(value: Any, unit: str = "") -> str:
    return "—" if value is None else f"{value}{unit}"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 2) if numerator and denominator else None


def table(results: list[dict[str, Any]]) -> str:
    """One row per scenario. "floor": the bare Job floor the targets are ratios to; "kubedag's
    Jobs": the same script creating the Jobs kubedag creates, so that the ratio to it is what
    the operator itself adds."""
    head = ("| scenario | stages | floor wall | floor, kubedag's Jobs | kubedag wall | ratio "
            "(to kubedag's Jobs) | dep→Job p50 / p99 (floor p50 / p99) "
            "| API requests (writes/stage) | operator CPU (passes) | peak RSS | status |")
    lines = [head, "|" + "---|" * 11]
    for r in results:
        k, f = r["kubedag"], r.get("floor") or {}
        own = r.get("floor_kubedag_jobs") or {}
        r["ratio"] = _ratio(k.get("wall_seconds"), f.get("wall_seconds"))
        r["ratio_to_kubedag_jobs"] = _ratio(k.get("wall_seconds"), own.get("wall_seconds"))
        lines.append(
            f"| {r['name']} | {r['stages']} | {_fmt(f.get('wall_seconds'), ' s')} "
            f"| {_fmt(own.get('wall_seconds'), ' s')} "
            f"| {_fmt(k['wall_seconds'], ' s')} | {_fmt(r['ratio'], 'x')} "
            f"({_fmt(r['ratio_to_kubedag_jobs'], 'x')}) "
            f"| {_fmt(k['latency_p50'], ' s')} / {_fmt(k['latency_p99'], ' s')} "
            f"({_fmt(f.get('latency_p50'))} / {_fmt(f.get('latency_p99'))}) "
            f"| {k['requests_total']} ({k['operator_writes']['per_stage']}) "
            f"| {k['operator']['cpu_seconds']} s ({k['operator'].get('passes', '—')}) "
            f"| {k['operator']['peak_rss_mib']} MiB "
            f"| {_fmt(k['status_bytes'], ' B')} |")
    return "\n".join(lines)


def cpu_table(results: list[dict[str, Any]]) -> str:
    """Where the two cores went in each measured window: CPU seconds of every test-bed
    process, the operator and the bench's own script, and the machine's busy and idle time.
    A kubedag row against its floors shows which process took the extra seconds."""
    names = ["kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok",
             "operator", "bench", "machine busy", "machine idle"]
    lines = ["| scenario | measured | " + " | ".join(names) + " |",
             "|" + "---|" * (len(names) + 2)]
    for r in results:
        for label, key in (("floor", "floor"), ("floor, kubedag's Jobs", "floor_kubedag_jobs"),
                           ("kubedag", "kubedag")):
            cpu = (r.get(key) or {}).get("cpu_seconds_by_process")
            if cpu:
                lines.append(f"| {r['name']} | {label} | "
                             + " | ".join(_fmt(cpu.get(n), " s") for n in names) + " |")
    return "\n".join(lines)


def targets(results: list[dict[str, Any]], lifetime_peak_mib: float) -> list[str]:
    out = []
    for r in results:
        k = r["kubedag"]
        p99_target = TARGET_MANY_P99 if r["name"] == "many" else TARGET_P99
        cpu_ms = 1000 * k["operator"]["cpu_seconds"] / r["stages"]
        checks = [
            ("p50 ≤ 0.3 s", k["latency_p50"] is not None and k["latency_p50"] <= TARGET_P50),
            (f"p99 ≤ {p99_target} s",
             k["latency_p99"] is not None and k["latency_p99"] <= p99_target),
            ("≤ 3 writes/stage", k["operator_writes"]["per_stage"] <= TARGET_WRITES),
            ("all runs Succeeded", k["complete"] and set(k["phases"]) == {"Succeeded"}),
            (f"operator CPU {cpu_ms:.1f} ms/stage ≤ {TARGET_CPU_MS_PER_STAGE}",
             cpu_ms <= TARGET_CPU_MS_PER_STAGE),
        ]
        if r["name"] in TARGET_RATIOS:
            target = TARGET_RATIOS[r["name"]]
            checks.append((f"wall ≤ {target}x floor",
                           r.get("ratio") is not None and r["ratio"] <= target))
        if r["stages"] >= 900 and r["runs"] == 1:
            checks.append(("status ≤ 256 KiB", (k["status_bytes"] or 0) <= TARGET_STATUS_BYTES))
        out.append(f"{r['name']}: " + ", ".join(
            f"{name} {'ok' if ok else 'MISSED'}" for name, ok in checks))
    out.append(f"operator peak RSS {lifetime_peak_mib:.0f} MiB ≤ {TARGET_RSS_MIB} MiB: "
               f"{'ok' if lifetime_peak_mib <= TARGET_RSS_MIB else 'MISSED'}")
    return out


def _measure(bench: Bench, scenario: Scenario, *, floor: bool) -> dict[str, Any]:
    print(f"== {scenario.name}: {scenario.stages} stages in {scenario.runs} run(s)", flush=True)
    entry: dict[str, Any] = {"name": scenario.name, "stages": scenario.stages,
                             "runs": scenario.runs}
    if floor:
        entry["floor"] = bench.floor(scenario)
        print(f"  floor   {json.dumps(entry['floor'])}", flush=True)
        entry["floor_kubedag_jobs"] = bench.floor(scenario, "kubedag")
        print(f"  floor (kubedag's Jobs) {json.dumps(entry['floor_kubedag_jobs'])}", flush=True)
    entry["kubedag"] = bench.kubedag(scenario)
    print(f"  kubedag {json.dumps(entry['kubedag'])}", flush=True)
    if bench.operator.process.poll() is not None:
        raise RuntimeError(f"the operator died; log: {bench.operator.log}")
    return entry


def _install_crds(plane: ControlPlane) -> None:
    kubectl = str(plane.bin_dir / "kubectl")
    subprocess.run([kubectl, "apply", "--server-side", "-f", str(REPO / "crds")],
                   env=plane.env(), check=True, capture_output=True)
    subprocess.run([kubectl, "wait", "--for=condition=Established", "--timeout=30s",
                    "crd/pipelines.kubedag.io", "crd/pipelineruns.kubedag.io"],
                   env=plane.env(), check=True, capture_output=True)


def _start_real_node(plane: ControlPlane) -> RealNode:
    images = ensure_images()
    return start_real_node(plane, [Path(image.archive) for image in images.images])


def _print_report(results: list[dict[str, Any]], peak_mib: float, *, real_node: bool) -> None:
    print()
    if real_node:
        print("on the real node (real containers):")
    print(table(results))
    print()
    print("CPU seconds by process in each measured window:")
    print(cpu_table(results))
    print()
    for line in targets(results, peak_mib):
        print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--runs", type=int, default=100, help="runs in the concurrent scenario")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor measurements")
    parser.add_argument("--profile", action="store_true", help="py-spy the operator")
    parser.add_argument("--real-node", action="store_true",
                        help="the chain on real containers on the test bed's real node")
    args = parser.parse_args(argv)
    if args.real_node:
        args.only = args.only or "chain"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.profile_dir = RESULTS / f"{stamp}-profile"
    if args.profile:
        args.profile_dir.mkdir()
    named = args.only.split(",") if args.only else []
    chosen = [s for s in scenarios(args.runs) if s.name in named or (s.default and not named)]

    plane = start_control_plane()
    print(f"control plane up in {plane.started_in_seconds} s; logs in {plane.log_dir}", flush=True)
    operator = None
    node: RealNode | None = None
    results: list[dict[str, Any]] = []
    try:
        _install_crds(plane)
        operator = Operator(plane)
        bench = Bench(plane, operator, args)
        if args.real_node:
            node = _start_real_node(plane)
            print(f"real node {node.name} Ready in {node.started_in_seconds} s", flush=True)
            bench.use_real_node(node.pod_placement(), WORKER_IMAGE)
        for scenario in chosen:
            results.append(_measure(bench, scenario, floor=not args.no_floor))
        peak = bench.sampler.lifetime_peak / 2**20
        bench.sampler.stop()
    finally:
        if operator:
            operator.stop()
        if node is not None:
            node.stop()
        plane.stop()
    _print_report(results, peak, real_node=args.real_node)
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps({
        "time": stamp, "host": {"cpus": os.cpu_count()}, "operator_peak_rss_mib": round(peak, 1),
        "pods": "real node" if args.real_node else "kwok",
        "operator_log": str(plane.log_dir / "kubedag-operator.log"),
        "scenarios": results}, indent=2))
    print(f"\nwritten {out.relative_to(REPO)}")
    if args.profile:
        print(f"profiles in {args.profile_dir.relative_to(REPO)}")


if __name__ == "__main__":
    main()

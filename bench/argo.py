"""`python -m bench.argo` (`make bench-argo`): kubedag side by side with Argo Workflows.

One control plane, one sitting, the scenarios of `make bench`, five columns: the Job floor (a
bare script creating Jobs, bench/floor.py), the pods-directly floor (the same script creating
Pods, no Jobs: what a design without Jobs could reach here), kubedag, Argo Workflows' controller
with its defaults and Argo "tuned" (``DEFAULT_REQUEUE_TIME=1s``, the lowest its source
recommends). Argo's controller is built from the Go module proxy at ``ARGO_VERSION``
(versions.env) by ``hack/build-cluster-bin.sh argo-workflows``, with the minimal CRDs of the same
release beside it, and runs out of cluster with the same client rate limits as the test bed's
controllers (qps 200, burst 400). Each measurement gets a fresh namespace and, for Argo, a
freshly started controller, so its CPU and peak RSS are that scenario's alone.

Each scenario becomes one Argo Workflow per run whose DAG has one task per stage (the fan-out's
982 stages are 982 tasks, not ``withItems``: each join depends on its own block of them, which
items cannot express). On kwok, pods only "run": Argo's init and wait containers never execute,
so no WorkflowTaskResults are written and Argo does less work than on a real cluster.

A run that has not reached a final phase after ``--cap`` seconds is reported as not finished,
with the Workflow's own phase, progress and message, and the bench moves on.

Options: --scenarios chain,lattice,fanout,concurrent; --runs N (concurrent runs, default 100);
--cap SECONDS (default 600); --skip-default (leave out the slow Argo-default runs);
--skip-floors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psutil
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bench.__main__ import RESULTS, Bench, Operator, Scenario, _install_crds, scenarios
from bench.dags import Dag
from bench.floor import POD_OWNER_KIND, FloorKind, run_floor
from bench.kube import Watch, get_json, request_totals
from bench.measure import Daemon, ProcessSampler
from kubedag.testbed import ControlPlane, start_control_plane
from kubedag.testbed.cluster import free_ports
from kubedag.testbed.versions import Versions

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION = "argoproj.io", "v1alpha1"
ARGO_NAMESPACE: Final = "argo"
ARGO_CONFIGMAP: Final = "workflow-controller-configmap"
FINAL_PHASES: Final = ("Succeeded", "Failed", "Error")
# `-` is an operator in Argo's dependency expressions, so a task called `l0-0` breaks the
# `dependencies` of the tasks after it; the bench's DAGs use names this pattern accepts.
TASK_NAME: Final = re.compile(r"^[a-zA-Z][a-zA-Z0-9]*$")
STAGE_TEMPLATE, DAG_TEMPLATE = "stage", "main"
READ_ONLY_VERBS: Final = frozenset({"GET", "LIST", "WATCH"})
# Same client rate limits as the test bed's kube-controller-manager and kube-scheduler.
ARGO_QPS, ARGO_BURST = 200, 400

# The table's columns, in order: (key in the results, heading).
COLUMNS: Final = (
    ("job_floor", "Job floor"),
    ("pods_floor", "pods-directly floor"),
    ("kubedag", "kubedag"),
    ("argo_default", "Argo default"),
    ("argo_tuned", "Argo tuned"),
)
KWOK_NOTE: Final = ("On kwok Argo's executor (init and wait containers) never runs and writes no "
                    "WorkflowTaskResults: Argo does less work here than on a real cluster.")


@dataclass(frozen=True)
class ArgoVariant:
    """One way of running Argo's controller: its column key and extra environment."""

    key: str
    env: dict[str, str] = field(default_factory=dict)


ARGO_DEFAULT = ArgoVariant("argo_default")
# Argo re-queues a Workflow on a pod event only after a fixed interval (10 s by default); 1 s is
# the lowest its source recommends.
ARGO_TUNED = ArgoVariant("argo_tuned", {"DEFAULT_REQUEUE_TIME": "1s"})


def scenario_title(scenario: Scenario) -> str:
    """The scenario as the table names it, e.g. ``lattice 30 x 30``."""
    titles = {"chain": f"chain of {len(scenario.dag)}", "lattice": "lattice 30 x 30",
              "fanout": "fan-out 1 → 982 → 16 → 1"}
    if scenario.name == "concurrent":
        return f"{scenario.runs} runs x {len(scenario.dag)} stages (1-6-6-6-1)"
    return titles.get(scenario.name, scenario.name)


# --- pure: manifests and the table ------------------------------------------------------------

def workflow_manifest(name: str, dag: Dag, placement: dict[str, Any],
                      container: dict[str, Any]) -> dict[str, Any]:
    """An Argo Workflow running ``dag`` as a DAG template, one task per stage.

    ``placement`` (nodeSelector and tolerations) goes on the Workflow spec, which applies it to
    every pod. The container gets a command when it has none: without one Argo's controller
    looks up the image's entrypoint in its registry, which a test bed cannot reach."""
    bad = [stage for stage in dag if not TASK_NAME.match(stage)]
    if bad:
        raise ValueError(f"not valid as Argo task names (letters and digits only): {bad[:5]}")
    tasks = [{"name": stage, "template": STAGE_TEMPLATE,
              **({"dependencies": list(deps)} if deps else {})} for stage, deps in dag.items()]
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": DAG_TEMPLATE,
            **placement,
            "templates": [
                {"name": STAGE_TEMPLATE, "container": {"command": ["true"], **container}},
                {"name": DAG_TEMPLATE, "dag": {"tasks": tasks}},
            ],
        },
    }


MEASURES: Final = (
    ("wall", "wall to last final phase (x Job floor)"),
    ("requests", "API requests, all clients (writes)"),
    ("cpu", "controller CPU"),
    ("rss", "controller peak RSS"),
    ("status", "status size (largest run)"),
)


def cell(measure: str, result: dict[str, Any], floor_wall: float | None, cap: float) -> str:
    """One system's figure for one measure; walls carry their ratio to the Job floor."""
    if result.get("skipped"):
        return "skipped"
    if measure == "wall":
        if not result.get("complete"):
            return f"> {cap:g} s ¹"
        wall = result["wall_seconds"]
        ratio = f" ({wall / floor_wall:.2f}x)" if floor_wall else ""
        return f"{wall:.1f} s{ratio}" + ("" if succeeded(result) else ", not Succeeded ¹")
    value = result.get({"requests": "requests_total", "cpu": "cpu_seconds",
                        "rss": "peak_rss_mib", "status": "status_bytes"}[measure])
    if value is None:
        return "—"
    if measure == "requests":
        return f"{value} ({result['requests_writes']})"
    if measure == "cpu":
        return f"{value:.1f} s"
    if measure == "rss":
        return f"{value:.0f} MiB"
    return f"{value / 1024:.1f} KiB"


def succeeded(result: dict[str, Any]) -> bool:
    """Finished, and every run Succeeded (floors record no phases: their pods all Succeeded)."""
    return bool(result.get("complete")) and set(result.get("phases") or {}) <= {"Succeeded"}


def table(results: list[dict[str, Any]], cap: float) -> str:
    """One markdown table: a row per (scenario, measure), a column per system, then notes.

    ``results``: [{"title": ..., "systems": {column key: result}}], a result being
    {"skipped": True} or {"complete", "wall_seconds", "requests_total", "requests_writes",
    "cpu_seconds", "peak_rss_mib", "status_bytes", "message"}; a system left out of a scenario
    shows as skipped."""
    lines = ["| scenario | measure | " + " | ".join(head for _, head in COLUMNS) + " |",
             "|" + "---|" * (2 + len(COLUMNS))]
    unfinished: list[str] = []
    for entry in results:
        systems = {key: entry["systems"].get(key, {"skipped": True}) for key, _ in COLUMNS}
        floor = systems["job_floor"]
        floor_wall = floor.get("wall_seconds") if floor.get("complete") else None
        for index, (measure, label) in enumerate(MEASURES):
            title = f"**{entry['title']}**" if index == 0 else ""
            cells = [cell(measure, systems[key], floor_wall, cap) for key, _ in COLUMNS]
            lines.append(f"| {title} | {label} | " + " | ".join(cells) + " |")
        unfinished += [
            f"{head}, {entry['title']}, "
            f"{'ended' if systems[key].get('complete') else f'not final after {cap:g} s'}: "
            f"{systems[key].get('message') or '—'}"
            for key, head in COLUMNS
            if not systems[key].get("skipped") and not succeeded(systems[key])]
    notes = ["", KWOK_NOTE,
             "Controller CPU and RSS: the controller's process (floors: the bench's own process, "
             "CPU only). API requests: apiserver_request_total over the measurement, every "
             "client (controller, kube-controller-manager, scheduler, kwok, the bench's watch)."]
    notes += [f"¹ {line}" for line in unfinished]
    return "\n".join(lines + notes)


def request_summary(delta: Counter[tuple[str, str, str, str]]) -> dict[str, Any]:
    """Totals of an apiserver_request_total difference: all requests, writes, and by verb."""
    by_verb: Counter[str] = Counter()
    for (verb, _, _, _), count in delta.items():
        by_verb[verb] += count
    return {"requests_total": sum(by_verb.values()),
            "requests_writes": sum(c for v, c in by_verb.items() if v not in READ_ONLY_VERBS),
            "requests_by_verb": dict(sorted(by_verb.items()))}


def argo_message(workflows: list[dict[str, Any]]) -> str:
    """What Argo itself says about Workflows that have not finished (phase, progress, its status
    message and any condition's) or that ended Failed or Error; empty when all Succeeded."""
    pending = [w for w in workflows if (w.get("status") or {}).get("phase") not in FINAL_PHASES]
    failed = [w for w in workflows if (w.get("status") or {}).get("phase") in ("Failed", "Error")]
    if not pending and not failed:
        return ""
    example = (pending or failed)[0]
    status = example.get("status") or {}
    said = [status.get("message") or ""] + [
        f"{c.get('type')}: {c.get('message')}" for c in status.get("conditions") or []
        if c.get("message")]
    words = "; ".join(s for s in said if s) or "no message"
    what = (f"{len(pending)} of {len(workflows)} Workflow(s) not final" if pending
            else f"{len(failed)} of {len(workflows)} Workflow(s) Failed or Error")
    return (f"{what}; e.g. {example['metadata']['name']}: phase {status.get('phase') or 'none'}, "
            f"progress {status.get('progress') or '—'}, Argo says: {words}")


# --- the shell: processes and measurements ----------------------------------------------------

def argo_dir(plane: ControlPlane) -> Path:
    """Where hack/build-cluster-bin.sh puts Argo's controller and CRDs (must match it)."""
    version = Versions.pinned().argo_workflows
    folder = plane.bin_dir / f"argo-workflows-{version}"
    if not (folder / "workflow-controller").is_file():
        raise FileNotFoundError(
            f"{folder}/workflow-controller is missing: run `hack/build-cluster-bin.sh "
            f"argo-workflows` (builds Argo Workflows {version} from the Go module proxy, "
            "about 5 min cold).")
    return folder


def install_argo(plane: ControlPlane, folder: Path) -> None:
    """Argo's minimal CRDs, its namespace and its controller ConfigMap: empty but for the port of
    its metrics server, a free one rather than the fixed 9090 (the controller panics when that is
    taken, and a test bed's Prometheus may hold it)."""
    kubectl = str(plane.bin_dir / "kubectl")
    subprocess.run([kubectl, "apply", "--server-side", "-k", str(folder / "crds")],
                   env=plane.env(), check=True, capture_output=True)
    subprocess.run([kubectl, "wait", "--for=condition=Established", "--timeout=30s",
                    "crd/workflows.argoproj.io"], env=plane.env(), check=True,
                   capture_output=True)
    with plane.api_client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ARGO_NAMESPACE)))
        [metrics_port] = free_ports(1)
        core.create_namespaced_config_map(ARGO_NAMESPACE, k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name=ARGO_CONFIGMAP),
            # A value with a newline is read as a block (a one-line one as a scalar).
            data={"metricsConfig": f"port: {metrics_port}\n"}))


class ArgoController(Daemon):
    """Argo's workflow-controller out of cluster, with the admin kubeconfig."""

    def __init__(self, plane: ControlPlane, folder: Path, variant: ArgoVariant) -> None:
        env = {**plane.env(), "ARGO_NAMESPACE": ARGO_NAMESPACE,
               "LEADER_ELECTION_DISABLE": "true", **variant.env}
        version = Versions.pinned().argo_workflows
        super().__init__(
            [str(folder / "workflow-controller"), f"--kubeconfig={plane.kubeconfig}",
             f"--namespace={ARGO_NAMESPACE}",
             f"--executor-image=quay.io/argoproj/argoexec:{version}",
             f"--qps={ARGO_QPS}", f"--burst={ARGO_BURST}"],
            env, plane.log_dir / f"{variant.key}.log", READY_LINE)


# Logged by the workflow garbage collector, which Run() starts once its informers have synced,
# just before the workflow workers.
READY_LINE: Final = "Performing periodic GC"


class SideBySide:
    """Runs one scenario on each system, on the control plane and kubedag operator of ``bench``."""

    def __init__(self, bench: Bench, argo: Path, cap: float) -> None:
        self.bench, self.argo, self.cap = bench, argo, cap
        self.api = bench.api
        self.custom = k8s.CustomObjectsApi(self.api)
        self.own_process = psutil.Process()

    def floor(self, scenario: Scenario, *, kind: FloorKind) -> dict[str, Any]:
        ns = self.bench.namespace(f"bench-{scenario.name}-floor-{kind}")
        dags = dict.fromkeys(scenario.run_names(), scenario.dag)
        before, cpu = request_totals(self.api), self._own_cpu()
        try:
            wall = run_floor(self.api, ns, dags, self.bench.placement, self.cap,
                             self.bench.container, kind=kind)
            result: dict[str, Any] = {"complete": True, "wall_seconds": round(wall, 2)}
        except RuntimeError as error:  # run_floor: not done within the cap, or a create refused
            result = {"complete": False, "wall_seconds": None, "message": str(error)}
        result.update(cpu_seconds=round(self._own_cpu() - cpu, 2), peak_rss_mib=None,
                      status_bytes=None,
                      **request_summary(request_totals(self.api) - before))
        self.bench.delete_namespace(ns)
        return result

    def _own_cpu(self) -> float:
        times = self.own_process.cpu_times()
        return float(times.user + times.system)

    def kubedag(self, scenario: Scenario) -> dict[str, Any]:
        measured = self.bench.kubedag(scenario)
        phases = measured["phases"]
        return {
            "complete": measured["complete"],
            "wall_seconds": measured["wall_seconds"] if measured["complete"] else None,
            "phases": phases,
            "message": "" if measured["complete"] else f"runs final so far: {phases}",
            "requests_total": measured["requests_total"],
            "requests_writes": sum(count for verb, count in measured["requests_by_verb"].items()
                                   if verb not in READ_ONLY_VERBS),
            "requests_by_verb": measured["requests_by_verb"],
            "cpu_seconds": measured["operator"]["cpu_seconds"],
            "peak_rss_mib": measured["operator"]["peak_rss_mib"],
            "status_bytes": measured["status_bytes"],
        }

    def argo_run(self, scenario: Scenario, variant: ArgoVariant) -> dict[str, Any]:
        ns = self.bench.namespace(f"bench-{scenario.name}-{variant.key.replace('_', '-')}")
        controller = ArgoController(self.bench.plane, self.argo, variant)
        done: dict[str, tuple[str, float]] = {}

        def on_workflow(kind: str, obj: dict[str, Any], at: float) -> None:
            phase = (obj.get("status") or {}).get("phase")
            if phase in FINAL_PHASES:
                done.setdefault(obj["metadata"]["name"], (phase, at))

        watch = Watch(self.api, f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/workflows",
                      on_workflow)
        sampler = ProcessSampler(controller.process.pid)
        try:
            before = request_totals(self.api)
            sampler.begin()
            names = scenario.run_names()

            def create(name: str) -> None:
                body = workflow_manifest(name, scenario.dag, self.bench.placement,
                                         self.bench.container)
                self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "workflows",
                                                            body, _preload_content=False)

            start = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(create, names))
            deadline = start + self.cap
            while (len(done) < len(names) and time.monotonic() < deadline
                   and controller.process.poll() is None):
                time.sleep(0.05)
            exited = controller.process.poll()
            measured = (sampler.end() if exited is None else
                        {"cpu_seconds": None, "peak_rss_mib": round(sampler.peak / 2**20, 1)})
            delta = request_totals(self.api) - before
            workflows: list[dict[str, Any]] = get_json(
            self.api, f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/workflows")["items"]
        finally:
            sampler.stop()
            watch.stop()
            controller.stop()
        complete = len(done) == len(names)
        sizes = [len(json.dumps(w.get("status") or {}, separators=(",", ":")))
                 for w in workflows]
        result = {
            "complete": complete,
            "wall_seconds": round(max(at for _, at in done.values()) - start, 2)
            if complete else None,
            "phases": dict(Counter(phase for phase, _ in done.values())),
            "message": argo_message(workflows) if exited is None else
            f"Argo's controller exited with {exited}; log: {controller.log}",
            **request_summary(delta), "cpu_seconds": measured["cpu_seconds"],
            "peak_rss_mib": measured["peak_rss_mib"],
            "status_bytes": max(sizes, default=None),
            "watch_errors": watch.errors[:5],
        }
        self.bench.delete_namespace(ns)
        return result


def measure(side: SideBySide, scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    print(f"== {scenario_title(scenario)}: {scenario.stages} stages in {scenario.runs} run(s)",
          flush=True)
    systems: dict[str, dict[str, Any]] = {}
    plan: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    if not args.skip_floors:
        plan += [("job_floor", lambda: side.floor(scenario, kind="jobs")),
                 ("pods_floor", lambda: side.floor(scenario, kind="pods"))]
    plan.append(("kubedag", lambda: side.kubedag(scenario)))
    plan.append(("argo_tuned", lambda: side.argo_run(scenario, ARGO_TUNED)))
    if not args.skip_default:
        plan.append(("argo_default", lambda: side.argo_run(scenario, ARGO_DEFAULT)))
    for key, run in plan:
        began = time.monotonic()
        systems[key] = run()
        print(f"  {key:<13} {json.dumps(systems[key])} ({time.monotonic() - began:.0f} s)",
              flush=True)
    return {"name": scenario.name, "title": scenario_title(scenario), "stages": scenario.stages,
            "runs": scenario.runs, "systems": systems}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.argo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="chain,lattice,fanout,concurrent",
                        help="comma-separated: chain, lattice, fanout, concurrent")
    parser.add_argument("--runs", type=int, default=100, help="runs in the concurrent scenario")
    parser.add_argument("--cap", type=float, default=600,
                        help="seconds a system gets per scenario before it is reported unfinished")
    parser.add_argument("--skip-default", action="store_true",
                        help="leave out Argo with its default requeue time (the slow column)")
    parser.add_argument("--skip-floors", action="store_true", help="leave out both floors")
    args = parser.parse_args(argv)
    wanted = args.scenarios.split(",")
    chosen = [s for s in scenarios(args.runs) if s.name in wanted]
    unknown = set(wanted) - {s.name for s in chosen}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    for scenario in chosen:
        scenario.timeout = args.cap
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    began = time.monotonic()
    plane = start_control_plane(complete_owner_kinds=("Job", "Workflow", POD_OWNER_KIND))
    print(f"control plane up in {plane.started_in_seconds} s; logs in {plane.log_dir}", flush=True)
    operator = None
    results: list[dict[str, Any]] = []
    try:
        argo = argo_dir(plane)
        _install_crds(plane)
        install_argo(plane, argo)
        operator = Operator(plane)
        # kubedag is measured exactly as `make bench` measures it (without its profiler).
        bench = Bench(plane, operator, argparse.Namespace(profile=False))
        side = SideBySide(bench, argo, args.cap)
        for scenario in chosen:
            results.append(measure(side, scenario, args))
        side.bench.sampler.stop()
    finally:
        if operator:
            operator.stop()
        plane.stop()
    print()
    versions = Versions.pinned()
    print(f"kubedag vs Argo Workflows {versions.argo_workflows}, {datetime.now(UTC):%Y-%m-%d}, "
          f"{os.cpu_count()} CPUs, kwok pods of 0 s, Kubernetes {versions.kubernetes}:")
    print(table(results, args.cap))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"argo-{stamp}.json"
    out.write_text(json.dumps({
        "time": stamp, "host": {"cpus": os.cpu_count()}, "pods": "kwok",
        "argo_version": Versions.pinned().argo_workflows, "cap_seconds": args.cap,
        "sitting_seconds": round(time.monotonic() - began, 1),
        "scenarios": results}, indent=2))
    print(f"\nwritten {out.relative_to(REPO)} after {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except ApiException as error:
        raise SystemExit(f"API error: {error.status} {error.reason}: {error.body}") from None

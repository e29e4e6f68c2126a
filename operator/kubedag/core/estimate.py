"""How long a pipeline will take and what it needs at once, before it runs. Pure: the SDK and
the CLI gather past runs and nodes from a cluster and pass them in.

* Duration of a stage: the median of past runs (when given), else its `estimatedSeconds`, else
  unknown, which counts as 0 s (and is listed, so a short estimate is not mistaken for a fast
  pipeline).
* Critical path: the longest chain by duration (main stages, then finally stages, which start
  once every main stage is done): a lower bound on the run's wall time.
* Wall time and peaks: a replay in which every stage starts as soon as its dependencies are done
  and it is its turn under `maxParallelStages` (higher priority first, then declaration order,
  as `decide` picks), assuming every stage succeeds at its first attempt. The peaks are the
  largest CPU, memory, GPU and pod totals of stages running at the same moment (each its own
  maximum); a fan-out stage counts one pod per batch, up to its parallelism.
* Node fit: a stage whose one pod requests more than any node with its node selector's labels
  (and only taints its tolerations tolerate) has allocatable can never start; it is named with
  the largest such node. The operator runs the same check for dry runs and a Pipeline's `Fits`
  condition, from the nodes it watches (`node_capacity` summarises a node's API object).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubedag.api import PipelineRunStatus, PipelineSpec, Stage, StagePhase, Toleration
from kubedag.core.dag import Node, build, critical_path
from kubedag.core.quantity import parse_quantity

CPU, MEMORY, EPHEMERAL_STORAGE = "cpu", "memory", "ephemeral-storage"
SOURCE_HISTORY, SOURCE_ESTIMATED, SOURCE_UNKNOWN = "history", "estimatedSeconds", "unknown"


# Taints with these effects keep pods that do not tolerate them off a node (PreferNoSchedule
# only discourages the scheduler).
BLOCKING_TAINT_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True)
class Taint:
    """A node taint that keeps pods off the node unless they tolerate it."""

    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else (
            f"{self.key}:{self.effect}")


@dataclass(frozen=True)
class NodeCapacity:
    """What a node offers pods: its labels, allocatable resources (cores, bytes, counts) and
    the taints that keep pods off it."""

    name: str
    labels: Mapping[str, str]
    allocatable: Mapping[str, float]
    taints: tuple[Taint, ...] = ()


def node_capacity(node: Mapping[str, Any]) -> NodeCapacity | None:
    """A node as the API server serves it (camelCase JSON), boiled down to what the fit check
    reads; None for a cordoned node (spec.unschedulable): no new pod lands there."""
    meta, spec = node.get("metadata") or {}, node.get("spec") or {}
    if not meta.get("name") or spec.get("unschedulable"):
        return None
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    taints = tuple(Taint(str(t.get("key") or ""), str(t.get("value") or ""), str(t["effect"]))
                   for t in spec.get("taints") or [] if t.get("effect") in BLOCKING_TAINT_EFFECTS)
    return NodeCapacity(name=str(meta["name"]), labels=dict(meta.get("labels") or {}),
                        allocatable={k: parse_quantity(v) for k, v in allocatable.items()},
                        taints=taints)


@dataclass(frozen=True)
class Unschedulable:
    """A stage whose pod fits no node; `largest_node` is None when no node has its labels
    (`untolerated` then names a taint that keeps it off the nodes that have them, if any)."""

    stage: str
    requests: Mapping[str, float]
    node_selector: Mapping[str, str]
    largest_node: str | None
    largest_allocatable: Mapping[str, float]
    untolerated: str | None = None

    def __str__(self) -> str:
        wanted = _format_resources(self.requests)
        if self.largest_node is None and self.untolerated is not None:
            return (f"stage {self.stage!r} (requests {wanted}): every node with the labels of "
                    f"its nodeSelector has a taint it does not tolerate ({self.untolerated})")
        if self.largest_node is None and not self.node_selector:
            return f"stage {self.stage!r} (requests {wanted}): there is no schedulable node"
        if self.largest_node is None:
            return (f"stage {self.stage!r} (requests {wanted}): no node has the labels "
                    f"{dict(self.node_selector)} of its nodeSelector")
        offered = _format_resources({k: self.largest_allocatable.get(k, 0.0)
                                     for k in self.requests})
        return (f"stage {self.stage!r} requests {wanted}, more than any node allocates; "
                f"the largest node, {self.largest_node}, has {offered}")


@dataclass(frozen=True)
class Estimate:
    """The estimate of one pipeline (see the module docstring for how each figure is made)."""

    critical_path_seconds: float
    critical_path: list[str]
    wall_seconds: float
    durations: dict[str, float]
    sources: dict[str, str]  # stage → history | estimatedSeconds | unknown
    peak_cpu: float  # cores
    peak_memory_bytes: float
    peak_gpu: float
    peak_pods: int
    widest: list[str]  # the stages running together at the moment with the most pods
    unschedulable: list[Unschedulable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def unknown(self) -> list[str]:
        """Stages with neither a past duration nor `estimatedSeconds` (counted as 0 s)."""
        return [name for name, source in self.sources.items() if source == SOURCE_UNKNOWN]

    def __str__(self) -> str:
        lines = [
            f"critical path: {_format_seconds(self.critical_path_seconds)} "
            f"({' → '.join(self.critical_path) or 'no stages'})",
            f"wall time (maxParallelStages respected): {_format_seconds(self.wall_seconds)}",
            f"peak at once: {self.peak_pods} pod(s), cpu {_format_number(self.peak_cpu)}, "
            f"memory {_format_bytes(self.peak_memory_bytes)}, gpu {_format_number(self.peak_gpu)}"
            f" (widest: {', '.join(self.widest) or '-'})",
        ]
        if self.unknown:
            lines.append(f"no duration known (counted as 0 s): {', '.join(self.unknown)}")
        lines += [f"fits no node: {u}" for u in self.unschedulable]
        lines += self.notes
        return "\n".join(lines)


def estimate(
    spec: PipelineSpec,
    *,
    history: Mapping[str, float] | None = None,
    nodes: Sequence[NodeCapacity] | None = None,
) -> Estimate:
    """The estimate of `spec` (a valid pipeline: its DAG is built, so a cycle raises DagError).

    `history` holds past durations by stage (see `median_durations`); `nodes`, when given,
    enables the node-fit check.
    """
    history = history or {}
    durations: dict[str, float] = {}
    sources: dict[str, str] = {}
    for stage in spec.all_stages():
        if stage.name in history:
            durations[stage.name], sources[stage.name] = history[stage.name], SOURCE_HISTORY
        elif stage.estimated_seconds is not None:
            durations[stage.name] = float(stage.estimated_seconds)
            sources[stage.name] = SOURCE_ESTIMATED
        else:
            durations[stage.name], sources[stage.name] = 0.0, SOURCE_UNKNOWN
    main_names = [s.name for s in spec.stages]
    main = build([Node(s.name, s.depends_on or ()) for s in spec.stages])
    finals = build([Node(s.name, s.depends_on or ()) for s in spec.finally_ or []],
                   path="spec.finally", external=main_names)
    main_path, final_path = critical_path(main, durations), critical_path(finals, durations)
    notes: list[str] = []
    pods = {s.name: _pods(s, spec, notes) for s in spec.all_stages()}
    replay = _replay(spec, durations, pods)
    return Estimate(
        critical_path_seconds=main_path.seconds + final_path.seconds,
        critical_path=[*main_path.stages, *final_path.stages],
        wall_seconds=replay.end,
        durations=durations,
        sources=sources,
        peak_cpu=replay.peaks[CPU],
        peak_memory_bytes=replay.peaks[MEMORY],
        peak_gpu=replay.peaks["gpu"],
        peak_pods=int(replay.peaks["pods"]),
        widest=replay.widest,
        unschedulable=unschedulable_stages(spec, nodes) if nodes is not None else [],
        notes=notes,
    )


def stage_seconds(status: PipelineRunStatus) -> dict[str, float]:
    """How long each stage of a finished run took, for stages that ran and succeeded (a reused
    or skipped stage says nothing about how long the work takes)."""
    seconds: dict[str, float] = {}
    for name, checkpoint in (status.stages or {}).items():
        if (checkpoint.phase is StagePhase.SUCCEEDED and checkpoint.start_time is not None
                and checkpoint.finish_time is not None and checkpoint.reason != "StageReused"):
            seconds[name] = max((checkpoint.finish_time - checkpoint.start_time).total_seconds(),
                                0.0)
    return seconds


def median_durations(runs: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The median duration of each stage over runs (each a mapping stage → seconds)."""
    samples: dict[str, list[float]] = {}
    for run in runs:
        for name, seconds in run.items():
            samples.setdefault(name, []).append(seconds)
    return {name: float(statistics.median(values)) for name, values in samples.items()}


def stage_requests(stage: Stage) -> dict[str, float]:
    """What one pod of the stage requests, by Kubernetes resource name (zeros left out)."""
    resources = stage.resources
    if resources is None:
        return {}
    requests = {
        CPU: parse_quantity(resources.cpu),
        MEMORY: parse_quantity(resources.memory),
        EPHEMERAL_STORAGE: parse_quantity(resources.ephemeral_storage),
        resources.gpu_resource_name: float(resources.gpu or 0),
    }
    return {name: amount for name, amount in requests.items() if amount > 0}


def unschedulable_stages(spec: PipelineSpec, nodes: Sequence[NodeCapacity]) -> list[Unschedulable]:
    """Stages whose pod fits on no node that has the labels of its node selector and only
    taints its tolerations tolerate (the stage's merged over `spec.defaults`, as its Job)."""
    defaults = spec.defaults
    found: list[Unschedulable] = []
    for stage in spec.all_stages():
        requests = stage_requests(stage)
        selector = {**((defaults.node_selector or {}) if defaults else {}),
                    **(stage.node_selector or {})}
        tolerations = [*((defaults.tolerations or []) if defaults else []),
                       *(stage.tolerations or [])]
        labelled = [n for n in nodes if all(n.labels.get(k) == v for k, v in selector.items())]
        candidates = [n for n in labelled if _untolerated(n, tolerations) is None]
        if any(_fits(requests, node) for node in candidates):
            continue
        if not candidates:
            taint = next((f"{t} on {n.name}" for n in labelled
                          if (t := _untolerated(n, tolerations)) is not None), None)
            found.append(Unschedulable(stage.name, requests, selector, None, {}, taint))
            continue
        largest = max(candidates, key=lambda n: tuple(n.allocatable.get(k, 0.0)
                                                       for k in (*requests, CPU, MEMORY)))
        found.append(Unschedulable(stage.name, requests, selector, largest.name,
                                   dict(largest.allocatable)))
    return found


def _untolerated(node: NodeCapacity, tolerations: Sequence[Toleration]) -> Taint | None:
    """The first of the node's taints that no toleration tolerates (core/v1 semantics: an
    empty key with Exists tolerates every taint, an empty effect every effect)."""
    for taint in node.taints:
        if not any(_tolerates(t, taint) for t in tolerations):
            return taint
    return None


def _tolerates(toleration: Toleration, taint: Taint) -> bool:
    if toleration.effect is not None and toleration.effect.value != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator is not None and toleration.operator.value == "Exists":
        return True
    return bool(toleration.key) and (toleration.value or "") == taint.value


def _fits(requests: Mapping[str, float], node: NodeCapacity) -> bool:
    return all(node.allocatable.get(name, 0.0) >= amount for name, amount in requests.items())


def _pods(stage: Stage, spec: PipelineSpec, notes: list[str]) -> int:
    """Pods the stage runs at once: one, or for a fan-out one per batch up to parallelism."""
    fan_out = stage.fan_out
    if fan_out is None:
        return 1
    items = fan_out.items
    if items is None:
        param = (fan_out.items_from or "").removeprefix("$(params.").removesuffix(")")
        default = next((p.default for p in spec.params or [] if p.name == param), None)
        if not isinstance(default, list):
            notes.append(f"stage {stage.name!r}: its fan-out items come from param {param!r}, "
                         "unknown before the run: counted as one pod")
            return 1
        items = default
    batches = max(math.ceil(len(items) / fan_out.batch_size), 1)
    return min(batches, fan_out.parallelism) if fan_out.parallelism else batches


@dataclass
class _Replay:
    end: float = 0.0
    peaks: dict[str, float] = field(
        default_factory=lambda: {CPU: 0.0, MEMORY: 0.0, "gpu": 0.0, "pods": 0.0})
    widest: list[str] = field(default_factory=list)


def _replay(spec: PipelineSpec, durations: Mapping[str, float], pods: Mapping[str, int]) -> _Replay:
    """Play the run forward on a clock (see the module docstring)."""
    replay = _Replay()
    stages = {s.name: s for s in spec.all_stages()}
    position = {name: i for i, name in enumerate(stages)}
    limit = spec.max_parallel_stages
    clock = 0.0
    done: set[str] = set()
    for group in (spec.stages, spec.finally_ or []):
        waiting = sorted(group, key=lambda s: (-s.priority, position[s.name]))
        running: dict[str, float] = {}  # stage → finish time
        while waiting or running:
            room = len(waiting) if limit is None else limit - len(running)
            for stage in [s for s in waiting if set(s.depends_on or ()) <= done][:max(room, 0)]:
                waiting.remove(stage)
                running[stage.name] = clock + durations[stage.name]
            _measure(replay, [stages[name] for name in running], pods)
            if not running:  # nothing can start: impossible in a valid DAG, but never spin
                break
            clock = min(running.values())
            for name in [n for n, finish in running.items() if finish <= clock]:
                del running[name]
                done.add(name)
        # Finally stages see every main stage done (their dependsOn on main stages included).
        done |= {s.name for s in group}
    replay.end = clock
    return replay


def _measure(replay: _Replay, running: Sequence[Stage], pods: Mapping[str, int]) -> None:
    totals = {CPU: 0.0, MEMORY: 0.0, "gpu": 0.0, "pods": 0.0}
    for stage in running:
        requests = stage_requests(stage)
        gpu_name = stage.resources.gpu_resource_name if stage.resources else ""
        count = pods[stage.name]
        totals[CPU] += count * requests.get(CPU, 0.0)
        totals[MEMORY] += count * requests.get(MEMORY, 0.0)
        totals["gpu"] += count * requests.get(gpu_name, 0.0)
        totals["pods"] += count
    if totals["pods"] > replay.peaks["pods"]:
        replay.widest = [stage.name for stage in running]
    for key, value in totals.items():
        replay.peaks[key] = max(replay.peaks[key], value)


def _format_seconds(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{rest:02d}s" if hours else (
        f"{minutes}m{rest:02d}s" if minutes else f"{rest}s")


def _format_number(value: float) -> str:
    return f"{value:g}"


def _format_bytes(value: float) -> str:
    for unit, size in (("Ti", 2.0**40), ("Gi", 2.0**30), ("Mi", 2.0**20), ("Ki", 2.0**10)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def _format_resources(resources: Mapping[str, float]) -> str:
    parts = []
    for name, amount in resources.items():
        is_bytes = name in (MEMORY, EPHEMERAL_STORAGE)
        parts.append(f"{name} {_format_bytes(amount) if is_bytes else _format_number(amount)}")
    return ", ".join(parts) or "nothing"

"""The logs of a run: its stages' pods in DAG order, each line prefixed `[stage:index]`.

A run's logs live in many pods, some of them gone (a Job's TTL, a node lost, the run deleted):
when a pod cannot be read the reader says so and shows what the status still knows, the
pod's termination message or the stage's checkpoint message, instead of failing. With
`follow`, stages that have not started yet are waited for, in DAG order, until the run ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from kubedag.api import StagePhase
from kubedag.client.errors import ClientError, api_errors, api_message
from kubedag.client.objects import REQUEST_TIMEOUT_SECONDS, result_of
from kubedag.core.observe import (
    LABEL_RUN_UID,
    PodSummary,
    parse_termination_message,
    summarize_pod,
)
from kubedag.core.runview import StageResult

if TYPE_CHECKING:
    from kubedag.client.handle import RunHandle

# How often `follow` looks for pods of stages that start later.
FOLLOW_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class LogLine:
    """A line of a pod's output, or (`note`) what kubedag says about a pod it cannot read."""

    stage: str
    index: int | None
    attempt: int
    text: str
    note: bool = False

    @property
    def prefix(self) -> str:
        """`[stage:index]`, index 0 for a stage without fan-out; later attempts say which."""
        retry = f" attempt {self.attempt}" if self.attempt > 1 else ""
        return f"[{self.stage}:{self.index or 0}{retry}]"

    def __str__(self) -> str:
        return f"{self.prefix} {self.text}"


def pod_order(pod: PodSummary) -> tuple[int, int, str]:
    """Attempts in order, then completion indexes: how people read a stage's pods."""
    return pod.attempt, pod.index or 0, pod.name


def stage_notes(stage: StageResult, pods_seen: int) -> list[LogLine]:
    """What to say about a stage whose pods are missing: skipped, or started but gone."""
    if pods_seen or stage.phase == StagePhase.PENDING:
        return []
    if stage.phase == StagePhase.SKIPPED or not stage.attempts:
        why = ": ".join(p for p in (stage.reason, stage.message) if p)
        return [LogLine(stage.name, None, 0, f"{stage.phase.value.lower()}"
                        + (f" ({why})" if why else "") + ", no pod", note=True)]
    lines = [LogLine(stage.name, None, stage.attempts,
                     f"pod is gone (its Job was deleted); stage {stage.phase.value}", note=True)]
    if stage.reason or stage.message:
        text = ": ".join(p for p in (stage.reason, stage.message) if p)
        lines.append(LogLine(stage.name, None, stage.attempts, f"message: {text}", note=True))
    if stage.outputs:
        lines.append(LogLine(stage.name, None, stage.attempts,
                             f"outputs: {json.dumps(stage.outputs, sort_keys=True)}",
                             note=True))
    return lines


def termination_notes(pod: PodSummary) -> list[LogLine]:
    """The pod's exit and termination message (the worker's outputs or error), if it ended."""
    if pod.exit_code is None:
        return []
    outputs, _, error = parse_termination_message(pod.termination_message)
    text = f"exited {pod.exit_code}"
    if pod.terminated_reason:
        text += f" ({pod.terminated_reason})"
    if error:
        text += f": {error}"
    elif outputs:
        text += f", outputs: {json.dumps(outputs, sort_keys=True)}"
    return [LogLine(pod.stage, pod.index, pod.attempt, text, note=True)]


def run_logs(handle: RunHandle, *, stage: str | None = None, index: int | None = None,
             follow: bool = False) -> Iterator[LogLine]:
    """The run's log lines in DAG order (see the module docstring)."""
    run = handle.get()
    uid = str(run.metadata.get("uid", ""))
    result = result_of(run)
    if stage is not None and stage not in result.stages:
        known = ", ".join(result.stages) or "none yet"
        raise ClientError(f"run {handle.name} has no stage {stage!r} (stages: {known})")
    names = [stage] if stage is not None else list(result.stages)
    reader = _PodReader(handle, uid)
    if not follow:
        by_stage: dict[str, list[PodSummary]] = {}
        for pod in reader.pods():
            by_stage.setdefault(pod.stage, []).append(pod)
        for name in names:
            pods = [p for p in sorted(by_stage.get(name, []), key=pod_order)
                    if index is None or (p.index or 0) == index]
            for pod in pods:
                yield from reader.lines(pod, follow=False)
            yield from stage_notes(result.stages[name], len(pods))
        return
    for name in names:
        yield from _follow_stage(handle, reader, name, index)


def _follow_stage(handle: RunHandle, reader: _PodReader, name: str,
                  index: int | None) -> Iterator[LogLine]:
    """A stage's pods as they appear (retries included) until the stage or the run ends."""
    seen: set[str] = set()

    def unseen() -> list[PodSummary]:
        return [p for p in sorted(reader.pods(name), key=pod_order)
                if p.name not in seen and (index is None or (p.index or 0) == index)]

    while True:
        fresh = unseen()
        for pod in fresh:
            yield from reader.lines(reader.wait_started(pod), follow=True)
            seen.add(pod.name)
        result = handle.result()
        current = result.stages.get(name)
        if current is None or current.phase.finished or result.finished:
            if unseen():
                continue  # pods that appeared while the last one was read
            if current is not None:
                yield from stage_notes(current, len(seen))
            return
        if not fresh:
            time.sleep(FOLLOW_POLL_SECONDS)


class _PodReader:
    """The run's pods (found by the run's uid label, so a re-created run of the same name
    does not mix in) and their logs."""

    def __init__(self, handle: RunHandle, run_uid: str) -> None:
        self.handle = handle
        self.core = handle.client.core
        self.selector = f"{LABEL_RUN_UID}={run_uid}"

    def pods(self, stage: str | None = None) -> list[PodSummary]:
        selector = self.selector + (f",kubedag.io/stage={stage}" if stage else "")
        with api_errors(f"listing pods of run {self.handle.name}"):
            listing = self.core.list_namespaced_pod(
                self.handle.namespace, label_selector=selector,
                _request_timeout=REQUEST_TIMEOUT_SECONDS)
        serialize = self.core.api_client.sanitize_for_serialization
        return [summarize_pod(serialize(p)) for p in listing.items]

    def exists(self, pod_name: str) -> bool:
        return any(p.name == pod_name for p in self.pods())

    def wait_started(self, pod: PodSummary) -> PodSummary:
        """The pod once it has left Pending (its logs exist), or gone, or its stage ended."""
        while pod.phase == "Pending":
            time.sleep(FOLLOW_POLL_SECONDS)
            now = next((p for p in self.pods(pod.stage) if p.name == pod.name), None)
            stage = self.handle.result().stages.get(pod.stage)
            if now is None or (stage is not None and stage.phase.finished):
                return now or pod
            pod = now
        return pod

    def lines(self, pod: PodSummary, *, follow: bool) -> Iterator[LogLine]:
        """The pod's log lines, then its exit; a note instead when the logs cannot be read."""
        try:
            response: Any = self.core.read_namespaced_pod_log(
                pod.name, self.handle.namespace, follow=follow, _preload_content=False,
                _request_timeout=None if follow else REQUEST_TIMEOUT_SECONDS)
            try:
                for text in _lines_of(response):
                    yield LogLine(pod.stage, pod.index, pod.attempt, text)
            finally:
                response.release_conn()
        except ApiException as error:
            # 404 also comes from a node that keeps no logs (a virtual kubelet, say): only a
            # pod that no longer exists is "gone".
            gone = error.status == 404 and not self.exists(pod.name)
            text = (f"pod {pod.name} is gone" if gone
                    else f"no logs from pod {pod.name}: {_short(api_message(error))}")
            yield LogLine(pod.stage, pod.index, pod.attempt, text, note=True)
        except HTTPError as error:
            yield LogLine(pod.stage, pod.index, pod.attempt,
                          f"no logs from pod {pod.name}: {error}", note=True)
        if follow:  # the pod has ended since it was listed: read its exit afresh
            pod = next((p for p in self.pods(pod.stage) if p.name == pod.name), pod)
        yield from termination_notes(pod)


def _lines_of(response: Any) -> Iterator[str]:
    """Text lines of a streamed HTTP response, as they arrive."""
    pending = b""
    for chunk in response.stream(4096, decode_content=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


def _short(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"

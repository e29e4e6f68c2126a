"""`RunHandle`: one PipelineRun — read it, wait for it, watch it, steer it, retry it."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from kubedag import contract
from kubedag.api import PipelineRun, PipelineRunStatus, PipelineSpec
from kubedag.client.errors import ClientError, ConflictError, NotFoundError, api_errors
from kubedag.client.objects import (
    PLURAL_RUNS,
    REQUEST_TIMEOUT_SECONDS,
    as_object,
    parse_run,
    result_of,
)
from kubedag.core.runview import RunResult

if TYPE_CHECKING:
    from kubedag.client.client import Client
    from kubedag.client.logs import LogLine

# One watch request lasts at most this long; then it is re-opened from the last
# resourceVersion (API servers end watches on their own after a few minutes anyway).
WATCH_WINDOW_SECONDS = 300
# The kubernetes package's watch helper carries no type hints.
_watch_module: Any = k8s_watch
_RETRY_SUFFIX = re.compile(r"-retry-\d+$")
_MAX_NAME = 253


class RunHandle:
    """A PipelineRun on the cluster, by name; every method asks the API server afresh."""

    def __init__(self, name: str, namespace: str, client: Client) -> None:
        self.name = name
        self.namespace = namespace
        self.client = client

    def __repr__(self) -> str:
        return f"RunHandle({self.namespace}/{self.name})"

    # --- reading ---------------------------------------------------------------------------

    def get(self) -> PipelineRun:
        """The whole PipelineRun object."""
        with api_errors(f"reading run {self.name} in namespace {self.namespace}"):
            body = as_object(self.client.custom.get_namespaced_custom_object(
                contract.API_GROUP, contract.API_VERSION, self.namespace, PLURAL_RUNS,
                self.name, _request_timeout=REQUEST_TIMEOUT_SECONDS))
        return parse_run(body)

    def status(self) -> PipelineRunStatus:
        """The run's status as the operator last wrote it (empty before it started)."""
        return self.get().status or PipelineRunStatus()

    def result(self) -> RunResult:
        """The run as people read it: phase, stages in DAG order, attempts, durations."""
        return result_of(self.get())

    def pipeline_spec(self) -> PipelineSpec | None:
        """The pipeline the run executes: its snapshot once started, else the inline spec
        (None for a pipelineRef run the operator has not picked up yet)."""
        run = self.get()
        return (run.status.pipeline_spec if run.status else None) or run.spec.pipeline_spec

    # --- waiting ---------------------------------------------------------------------------

    def updates(self, timeout: float | None = None) -> Iterator[PipelineRun]:
        """The run now, then each time it changes, until it finishes (the last one yielded).

        One Kubernetes watch on this run alone, resumed from the last resourceVersion when
        the server closes it, and re-listed when that version is too old (410 Gone): no
        polling. Raises TimeoutError when `timeout` seconds pass first, NotFoundError when
        the run is deleted meanwhile.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        run, version = self._get_with_version()
        yield run
        while not _finished(run):
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"run {self.name} did not finish within {timeout:g} s")
            window = WATCH_WINDOW_SECONDS if remaining is None else min(
                WATCH_WINDOW_SECONDS, max(1, math.ceil(remaining)))
            for run_now, version_now in self._watch(version, window):
                if run_now is None and not version_now:
                    run, version = self._get_with_version()  # 410 Gone: start over from now
                    yield run
                    break
                version = version_now
                if run_now is None:
                    continue  # a bookmark: only the version moved on
                run = run_now
                yield run
                if _finished(run) or _expired(deadline):
                    break

    def wait(self, timeout: float | None = None) -> RunResult:
        """Block until the run finishes and return its result; TimeoutError after `timeout`
        seconds. The result's `exit_code` is what `kubedag submit --wait` exits with."""
        for _ in self.updates(timeout):
            pass
        return self.result()

    def watch(self, *, live: bool | None = None, timeout: float | None = None,
              stream: IO[str] | None = None) -> RunResult:
        """`wait`, showing the stages as they go: a live table in a terminal, progress bars
        in Jupyter, one line per transition otherwise (`live=False` forces lines)."""
        from kubedag.client.display import choose_display  # noqa: PLC0415 (rich/tqdm: lazily)

        display = choose_display(live, stream)
        try:
            for run in self.updates(timeout):
                display.update(result_of(run))
        finally:
            display.close()
        return self.result()

    # --- steering --------------------------------------------------------------------------

    def suspend(self) -> None:
        """No new stage starts (running ones finish); the run shows Paused."""
        self._patch_spec({"suspend": True}, "suspending")

    def resume(self) -> None:
        """Undo `suspend`: ready stages start again."""
        self._patch_spec({"suspend": False}, "resuming")

    def cancel(self) -> None:
        """Stop the run for good: running stages' Jobs are deleted, the run ends Cancelled."""
        self._patch_spec({"cancel": True}, "cancelling")

    def retry(self, from_stage: str | None = None) -> RunHandle:
        """A new run of the same pipeline and params that reuses this run's succeeded stages
        (`spec.resumeFrom`), named `<run>-retry-<n>`.

        `from_stage` must be a stage of the run; it and everything downstream of it run
        again, even where they succeeded here (`spec.rerunStages`).
        """
        old = self.get()
        if from_stage is not None:
            self._check_stage(old, from_stage)
        spec = old.spec.model_copy(update={
            "resume_from": self.name, "suspend": False, "cancel": False, "dry_run": False,
            "rerun_stages": [from_stage] if from_stage is not None else None})
        metadata: dict[str, Any] = {"namespace": self.namespace}
        if old.metadata.get("labels"):
            metadata["labels"] = dict(old.metadata["labels"])
        taken = {r.metadata["name"] for r in self.client.list_run_objects()}
        base = _RETRY_SUFFIX.sub("", self.name)[: _MAX_NAME - len("-retry-1000")]
        for number in range(1, 1000):
            name = f"{base}-retry-{number}"
            if name in taken:
                continue
            try:
                return self.client.create_run(PipelineRun(
                    metadata={**metadata, "name": name}, spec=spec))
            except ConflictError:
                continue  # created meanwhile by someone else: take the next number
        raise ClientError(f"run {self.name} has been retried 999 times already")

    # --- logs ------------------------------------------------------------------------------

    def logs(self, stage: str | None = None, index: int | None = None, *,
             follow: bool = False) -> Iterator[LogLine]:
        """Log lines of the run's pods in DAG order, each with its `[stage:index]` prefix;
        see `kubedag.client.logs`."""
        from kubedag.client.logs import run_logs  # noqa: PLC0415 (avoid an import cycle)

        return run_logs(self, stage=stage, index=index, follow=follow)

    # --- internals -------------------------------------------------------------------------

    def _get_with_version(self) -> tuple[PipelineRun, str]:
        run = self.get()
        return run, str(run.metadata.get("resourceVersion", ""))

    def _watch(self, version: str, window: int) -> Iterator[tuple[PipelineRun | None, str]]:
        """The events of one watch request: (run, its resourceVersion) per change,
        (None, version) per bookmark, and (None, "") when the version is too old (410 Gone)."""
        watcher = _watch_module.Watch()
        try:
            with api_errors(f"watching run {self.name}"):
                events = watcher.stream(
                    self.client.custom.list_namespaced_custom_object, contract.API_GROUP,
                    contract.API_VERSION, self.namespace, PLURAL_RUNS,
                    field_selector=f"metadata.name={self.name}", resource_version=version,
                    allow_watch_bookmarks=True, timeout_seconds=window,
                    _request_timeout=window + REQUEST_TIMEOUT_SECONDS)
                for event in _gone_as_none(events):
                    if event is None:
                        yield None, ""
                        return
                    body = event["object"]
                    version = str(body.get("metadata", {}).get("resourceVersion", version))
                    if event["type"] == "DELETED":
                        raise NotFoundError(f"run {self.name} was deleted")
                    yield (None if event["type"] == "BOOKMARK" else parse_run(body)), version
        finally:
            watcher.stop()

    def _patch_spec(self, spec: dict[str, Any], verb: str) -> None:
        with api_errors(f"{verb} run {self.name} in namespace {self.namespace}"):
            self.client.custom.patch_namespaced_custom_object(
                contract.API_GROUP, contract.API_VERSION, self.namespace, PLURAL_RUNS,
                self.name, {"spec": spec}, _request_timeout=REQUEST_TIMEOUT_SECONDS)

    def _check_stage(self, run: PipelineRun, stage: str) -> None:
        spec = (run.status.pipeline_spec if run.status else None) or run.spec.pipeline_spec
        if spec is None:
            raise ClientError(f"run {self.name} has not started: retry it without --from")
        stages = spec.all_stages()
        if stage not in {s.name for s in stages}:
            known = ", ".join(s.name for s in stages)
            raise ClientError(f"run {self.name} has no stage {stage!r} (stages: {known})")


def _gone_as_none(events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any] | None]:
    """The events, then None instead of the 410 Gone error that ends a stale watch."""
    try:
        yield from events
    except ApiException as error:
        if error.status != 410:
            raise
        yield None


def _finished(run: PipelineRun) -> bool:
    return run.status is not None and run.status.phase.finished


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline

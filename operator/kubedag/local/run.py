"""run_local: the operator's reconcile loop with local processes in place of the cluster.

The loop is the shell's (`kubedag.shell.reconciler`): gather RunFacts, call the same
`kubedag.core.decide`, carry out the Plan, and go again when a process ends, when the plan
asks (`requeue_after`: a retry's backoff, a deadline) or when the run is cancelled. Nothing
is decided here: `when`, retries, timeouts, outputs, fan-out, finally stages and critical
stages all come from the core, so a local run behaves as the cluster would.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kubedag.api import PipelineRun, PipelineRunSpec, PipelineRunStatus
from kubedag.core.decide import RunFacts, decide
from kubedag.core.jobspec import JobSettings, RunIdentity
from kubedag.core.plan import Plan
from kubedag.local.container import host_environment, local_command
from kubedag.local.ignored import ignored_settings
from kubedag.local.jobs import LocalJob

log = logging.getLogger("kubedag.local")

DEFAULT_NAME = "local"
DEFAULT_NAMESPACE = "local"  # KUBEDAG_NAMESPACE of a run without metadata.namespace
# A deleted Job's processes get SIGTERM, then SIGKILL this much later (a pod's default is 30 s:
# locally nobody wants to wait that long for a cancelled run to end).
TERMINATION_GRACE_SECONDS = 5
# How often processes are looked at between passes.
POLL_SECONDS = 0.05
# A pass runs at least this often even when nothing happened, like the operator's periodic
# resync: cheap insurance against a change no tick reported.
RESYNC_SECONDS = 1.0

StatusCallback = Callable[[PipelineRunStatus], None]


@dataclass
class LocalRun:
    """A finished local run: its status (as the operator would have written it), the shared
    workspace (kept), what the run ignored, and the folder with each process's log and
    termination message (`<job>-<index>.log`, `<job>-<index>.termination-log`)."""

    status: PipelineRunStatus
    workspace: Path
    ignored: list[str]
    logs: Path | None = None


def default_worker_command() -> list[str]:
    """`kubedag-worker` as this interpreter runs it, whatever is on PATH."""
    return [sys.executable, "-m", "kubedag.worker"]


def run_local(run: PipelineRun, *, workspace: Path | None = None,
              on_status: StatusCallback | None = None, cancel: threading.Event | None = None,
              worker_command: Sequence[str] | None = None) -> LocalRun:
    """Run ``run`` (with an inline ``spec.pipelineSpec``) to its end with local processes.

    ``workspace``: the directory shared by all stages (default: a new temporary directory,
    kept afterwards). ``on_status`` is called with the status after each pass that changed
    it. Setting ``cancel`` cancels the run as ``spec.cancel`` would. ``worker_command``
    stands for `kubedag-worker` in processor stages (default: this Python's
    `-m kubedag.worker`). Raises ValueError for a run that cannot be run locally at all.
    """
    spec = run.spec
    if spec.pipeline_spec is None:
        raise ValueError("a local run needs the pipeline inline (spec.pipelineSpec); "
                         f"pipelineRef {spec.pipeline_ref.name if spec.pipeline_ref else ''!r} "
                         "names a Pipeline on a cluster")
    if spec.dry_run:
        raise ValueError("spec.dryRun: a local run has no dry run; validate the pipeline "
                         "offline instead (kubedag lint, Pipeline.validate())")
    name = str(run.metadata.get("name") or DEFAULT_NAME)
    namespace = str(run.metadata.get("namespace") or DEFAULT_NAMESPACE)
    workspace, logs = _folders(name, workspace)
    ignored = ignored_settings(spec, spec.pipeline_spec, workspace)
    log.warning("local run %s: workspace %s; stages run as processes on this host", name,
                workspace)
    for line in ignored:
        log.warning("local run %s: %s", name, line)
    identity = RunIdentity(name=name, namespace=namespace, uid=str(uuid.uuid4()), pipeline=name)
    loop = _LocalLoop(identity, spec, run.status or PipelineRunStatus(), workspace, logs,
                      list(worker_command or default_worker_command()))
    status = loop.run(on_status, cancel)
    return LocalRun(status=status, workspace=workspace, ignored=ignored, logs=logs)


def _folders(name: str, workspace: Path | None) -> tuple[Path, Path]:
    """(workspace, logs): the logs folder lies beside a default workspace, so that the
    stages' shared directory holds only what they put there."""
    if workspace is None:
        root = Path(tempfile.mkdtemp(prefix=f"kubedag-{name}-"))
        workspace, logs = root / "workspace", root / "logs"
    else:
        logs = Path(tempfile.mkdtemp(prefix=f"kubedag-{name}-logs-"))
    workspace.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    return workspace.resolve(), logs.resolve()


def _now() -> datetime:
    return datetime.now(UTC)


def _without_kueue(spec: PipelineRunSpec) -> PipelineRunSpec:
    """The run with no Kueue queue, its own or its pipeline's default: no Kueue admits local
    processes, so Jobs created suspended for it would wait forever."""
    pipeline = spec.pipeline_spec
    if pipeline is not None and pipeline.defaults is not None and pipeline.defaults.queue_name:
        pipeline = pipeline.model_copy(update={
            "defaults": pipeline.defaults.model_copy(update={"queue_name": None})})
    return spec.model_copy(update={"queue_name": None, "priority_class_name": None,
                                   "pipeline_spec": pipeline})


class _LocalLoop:
    """One run's state between passes: the status decided last and the Jobs running."""

    def __init__(self, identity: RunIdentity, spec: PipelineRunSpec, status: PipelineRunStatus,
                 workspace: Path, logs: Path, worker_command: list[str]) -> None:
        # A local run neither pauses, nor resumes from another run, nor waits for Kueue (see
        # ignored_settings).
        self.spec = _without_kueue(spec).model_copy(update={"suspend": False,
                                                            "resume_from": None})
        self.status = status
        self.workspace = workspace
        self.logs = logs
        self.worker_command = worker_command
        self.identity = identity
        self.settings = JobSettings(workspace_path=str(workspace),
                                    termination_grace_seconds=TERMINATION_GRACE_SECONDS)
        self.host_env = host_environment(os.environ, sys.path)
        self.created = _now()
        self.jobs: dict[str, LocalJob] = {}

    def run(self, on_status: StatusCallback | None, cancel: threading.Event | None) -> \
            PipelineRunStatus:
        try:
            while True:
                now = _now()
                cancelled = cancel is not None and cancel.is_set()
                plan = decide(self._facts(now, cancelled), now, self.settings)
                again = self._execute(plan, now)
                if plan.status != self.status:
                    self.status = plan.status
                    if on_status is not None:
                        on_status(self.status)
                if self.status.phase.finished:
                    return self.status
                if not again:
                    self._wait(plan.requeue_after, None if cancelled else cancel)
        finally:
            self._stop_all()

    def _facts(self, now: datetime, cancelled: bool) -> RunFacts:
        for job in self.jobs.values():
            job.tick(now)
        spec = self.spec.model_copy(update={"cancel": True}) if cancelled else self.spec
        return RunFacts(
            identity=self.identity, generation=1, created=self.created, spec=spec,
            status=self.status, referenced_pipeline=None,
            jobs={name: job.summary() for name, job in self.jobs.items()},
            pods=[pod for job in self.jobs.values() for pod in job.pod_summaries()],
            # Nothing local gets better by waiting: a container that cannot start fails now.
            start_failure_grace=timedelta(0))

    def _execute(self, plan: Plan, now: datetime) -> bool:
        """Carry out the plan; whether the core must look again at once (a new Job's
        processes started, or could not start)."""
        again = False
        for event in plan.events:
            log.log(logging.WARNING if event.type == "Warning" else logging.INFO,
                    "%s: %s", event.reason, event.message)
        for name in plan.delete_jobs:
            job = self.jobs.get(name)
            if job is not None:
                job.delete(now)
        for manifest in plan.create_jobs:
            command = local_command(manifest, namespace=self.identity.namespace,
                                    workspace=self.workspace, worker_command=self.worker_command,
                                    host_env=self.host_env)
            job = LocalJob(manifest, command, self.logs, now)
            self.jobs[job.name] = job
            again |= job.tick(now)
        self._forget_deleted()
        return again

    def _forget_deleted(self) -> None:
        """A deleted Job is gone once its processes are (as its pods would be)."""
        for name in [n for n, job in self.jobs.items() if job.deleting and not job.alive]:
            del self.jobs[name]

    def _wait(self, requeue_after: float | None, cancel: threading.Event | None) -> None:
        """Until a process ends, a Job's deadline, the plan's requeue time or a cancel."""
        # Job deadlines need no timer: tick() sees them pass, as it sees processes end.
        until = _now() + timedelta(seconds=RESYNC_SECONDS if requeue_after is None
                                   else min(requeue_after, RESYNC_SECONDS))
        while True:
            now = _now()
            changed = [job.tick(now) for job in list(self.jobs.values())]
            self._forget_deleted()
            if any(changed) or now >= until or (cancel is not None and cancel.is_set()):
                return
            if cancel is not None:
                cancel.wait(POLL_SECONDS)
            else:
                time.sleep(POLL_SECONDS)

    def _stop_all(self) -> None:
        """Leave no process behind, whatever ended the loop (an error, KeyboardInterrupt)."""
        now = _now()
        for job in self.jobs.values():
            if job.alive and not job.deleting:
                job.delete(now)
        while any(job.alive for job in self.jobs.values()):
            time.sleep(POLL_SECONDS)
            now = _now()
            for job in self.jobs.values():
                job.tick(now)
        self.jobs.clear()

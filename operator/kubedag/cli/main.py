"""The `kubedag` command (also installed as `kubectl-kubedag`): submit, watch and steer runs.

Exit codes, the same for `submit --wait`, `submit --watch`, `watch` and `retry --wait`
(`wrong exit codes are the top bug class of argo and tkn`, so they are tested one by one):

    ====  ================================================================================
    code  meaning
    ====  ================================================================================
    0     the run succeeded (also Degraded), or the command did what it was asked
    1     the run failed
    2     the run was cancelled
    3     timed out: the run's timeoutSeconds passed, or --timeout passed while waiting
    4     usage or client error: bad flags, file not found, invalid pipeline, malformed -p,
          API errors (NotFound, Forbidden, unreachable server); one line, no traceback
    ====  ================================================================================

Global options (--kubeconfig, --context, -n/--namespace) may come before or after the
command, as with kubectl. `@latest` names the newest run of the namespace wherever a run is
expected. Read commands take `-o json|yaml`. Without a terminal, `watch` prints one line per
transition.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from kubedag.api import PipelineRun, RunCacheMode, to_k8s
from kubedag.cli.graph import render_graph
from kubedag.cli.loading import PYTHON_REFERENCE, Loaded, LoadError, load
from kubedag.cli.localrun import run_locally
from kubedag.cli.params import ParamError, declared_types, parse_params
from kubedag.client import Client, ClientError, RunHandle
from kubedag.client.display import run_table
from kubedag.client.objects import pipeline_name, result_of
from kubedag.core.cache import explain_run
from kubedag.core.params import resolve_params
from kubedag.core.runview import (
    EXIT_CODES_HELP,
    EXIT_SUCCEEDED,
    EXIT_TIMED_OUT,
    EXIT_USAGE,
    RunResult,
    format_seconds,
)
from kubedag.sdk import PipelineDefinitionError
from kubedag.sdk.manifest import run_of
from kubedag.templates import (
    TemplateInfo,
    UnknownTemplateError,
    from_template,
    list_templates,
    template_info,
)

EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C
DEBUG_VARIABLE = "KUBEDAG_DEBUG"


class OutputFormat(StrEnum):
    JSON = "json"
    YAML = "yaml"


class GraphFormatOption(StrEnum):
    DOT = "dot"
    MERMAID = "mermaid"


class UsageError(Exception):
    """A problem with what the user asked (exit code 4), reported as one line."""


@dataclass
class Connection:
    """The global options; the client is made on first use, so offline commands (lint,
    graph of a file) work without a kubeconfig."""

    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.kubeconfig, self.context, self.namespace)
        return self._client


app = typer.Typer(
    name="kubedag",
    help="Submit, watch and steer kubedag pipeline runs (kubectl kubedag ... works too).",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

RunArg = Annotated[str, typer.Argument(help="Run name, or @latest for the newest run.")]
OutputOpt = Annotated[OutputFormat | None, typer.Option(
    "-o", "--output", help="Print data as json or yaml instead of a table.")]
TimeoutOpt = Annotated[float | None, typer.Option(
    "--timeout", min=0, help="Give up waiting after this many seconds (exit code 3).")]
WatchOpt = Annotated[bool, typer.Option("--watch", help="Show stages live until the run ends.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait quietly until the run ends.")]


@app.callback()
def _global_options(
    ctx: typer.Context,
    kubeconfig: Annotated[Path | None, typer.Option(
        help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config).")] = None,
    context: Annotated[str | None, typer.Option(help="Kubeconfig context to use.")] = None,
    namespace: Annotated[str | None, typer.Option(
        "-n", "--namespace", help="Namespace (default: the context's, else default).")] = None,
) -> None:
    ctx.obj = Connection(kubeconfig, context, namespace)


def _connection(ctx: typer.Context) -> Connection:
    connection: Connection = ctx.ensure_object(Connection)
    return connection


# --- output helpers ------------------------------------------------------------------------

def _console(stream: IO[str] | None = None) -> Console:
    out = stream or sys.stdout
    # Pipes get wide lines: a table folded at 80 columns is hard to grep.
    return Console(file=out, highlight=False, width=None if out.isatty() else 200)


def _emit(data: Any, output: OutputFormat) -> None:
    if output == OutputFormat.JSON:
        print(json.dumps(data, indent=2, sort_keys=False, default=str))
    else:
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")


def _say(text: str, output: OutputFormat | None) -> None:
    """A message for people: to stderr when stdout carries json/yaml."""
    print(text, file=sys.stderr if output else sys.stdout, flush=True)


def _show_run(result: RunResult, run: PipelineRun | None = None) -> None:
    console = _console()
    if run is not None:
        created = run.metadata.get("creationTimestamp", "")
        console.print(f"Name:       {result.name}\nNamespace:  {result.namespace}\n"
                      f"Pipeline:   {pipeline_name(run) or '-'}\nCreated:    {created}")
        if run.spec.params:
            console.print(f"Params:     {json.dumps(run.spec.params, sort_keys=True)}")
        if run.spec.resume_from:
            console.print(f"ResumeFrom: {run.spec.resume_from}")
        console.print()
    console.print(run_table(result))


def _finish(handle: RunHandle, *, watch: bool, timeout: float | None,
            output: OutputFormat | None) -> int:
    """Wait for the run (showing it with `watch`), print the outcome, return the exit code."""
    stream = sys.stderr if output else sys.stdout
    try:
        result = (handle.watch(timeout=timeout, stream=stream) if watch
                  else handle.wait(timeout))
        code = result.exit_code
    except TimeoutError as error:
        print(f"timed out: {error}", file=sys.stderr)
        result, code = handle.result(), EXIT_TIMED_OUT
    if output:
        _emit(result.to_dict(), output)
    elif not watch:
        _show_run(result)
    return code


# --- submitting ------------------------------------------------------------------------------

def _run_to_submit(loaded: Loaded, params: dict[str, Any], name: str | None) -> PipelineRun:
    """The PipelineRun to create: the file's own (with `-p` values over its params), else an
    inline run of its pipeline as the SDK makes them (labelled with the pipeline's name, so
    `kubedag ls --pipeline` finds it); params checked against the pipeline's declarations."""
    if loaded.run is None:
        assert loaded.spec is not None  # a Loaded without a run has a pipeline
        return run_of(loaded.spec, pipeline=loaded.name, params=params or None, name=name,
                      namespace=None)
    run = loaded.run.model_copy(deep=True)
    if params:
        run.spec.params = {**(run.spec.params or {}), **params}
    if name:
        run.metadata = {k: v for k, v in run.metadata.items() if k != "generateName"}
        run.metadata["name"] = name
    if loaded.spec is not None:  # else a pipelineRef to the cluster: the operator checks
        _, errors = resolve_params(loaded.spec, run.spec.params)
        if errors:
            raise LoadError(loaded.source, errors)
    return run


@app.command()
def submit(
    ctx: typer.Context,
    file: Annotated[str, typer.Option(
        "-f", "--file", help="Pipeline YAML (Pipeline and/or PipelineRun), or pkg.module:attr "
        "naming a pipeline built in Python.")],
    param: Annotated[list[str] | None, typer.Option(
        "-p", "--param", help="NAME=VALUE, a YAML scalar or JSON (-p n=3, "
        "-p files='[\"a\",\"b\"]'). Repeatable.")] = None,
    name: Annotated[str | None, typer.Option(help="Run name (default: generated).")] = None,
    watch: WatchOpt = False,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = None,
    output: OutputOpt = None,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Neither reuse nor store cached stage results "
        "(spec.cache: Disabled).")] = False,
    overwrite_cache: Annotated[bool, typer.Option(
        "--overwrite-cache", help="Run cacheable stages and replace their cached results "
        "(spec.cache: Overwrite).")] = False,
) -> None:
    """Submit a run of a pipeline; with --watch or --wait, exit with the run's exit code."""
    if watch and wait:
        raise UsageError("--watch and --wait exclude each other")
    if no_cache and overwrite_cache:
        raise UsageError("--no-cache and --overwrite-cache exclude each other")
    loaded = load(file)
    params = parse_params(param or [], declared_types(loaded.spec))
    run = _run_to_submit(loaded, params, name)
    if no_cache or overwrite_cache:
        run.spec.cache = RunCacheMode.DISABLED if no_cache else RunCacheMode.OVERWRITE
    client = _connection(ctx).client()
    if loaded.run is not None:
        for pipeline in loaded.pipelines:  # the run may reference them
            client.apply_pipeline(pipeline)
    handle = client.create_run(run)
    _say(f"run {handle.name} created in namespace {handle.namespace}", output)
    if watch or wait or timeout is not None:
        raise typer.Exit(_finish(handle, watch=watch, timeout=timeout, output=output))
    if output:
        _emit(handle.result().to_dict(), output)


# --- reading -----------------------------------------------------------------------------

@app.command()
def get(ctx: typer.Context, run: RunArg, output: OutputOpt = None) -> None:
    """Show a run as a tree: phase, attempt n/m, fan-out, wait and run time, message."""
    handle = _connection(ctx).client().run(run)
    obj = handle.get()
    result = result_of(obj)
    if output:
        _emit(result.to_dict(), output)
    else:
        _show_run(result, obj)


@app.command()
def explain(ctx: typer.Context, run: RunArg, output: OutputOpt = None) -> None:
    """Say how the stage cache served each stage of a run: a hit and from which run, or a miss
    and why (which part of the stage's key changed since its latest cached result)."""
    obj = _connection(ctx).client().run(run).get()
    status = obj.status
    pipeline = (status.pipeline_spec if status is not None else None) or obj.spec.pipeline_spec
    if pipeline is None:
        raise UsageError(f"run {obj.metadata.get('name')} has not started: nothing to explain")
    verdicts = explain_run(pipeline, (status.stages if status else None) or {},
                           datetime.now(UTC))
    if output:
        _emit([{"stage": v.stage, "verdict": v.verdict, "detail": v.detail, "key": v.key}
               for v in verdicts], output)
        return
    table = Table("STAGE", "CACHE", "WHY", box=None, pad_edge=False)
    for v in verdicts:
        table.add_row(v.stage, v.verdict, v.detail)
    _console().print(table)


@app.command("ls")
def list_runs(
    ctx: typer.Context,
    pipeline: Annotated[str | None, typer.Option(help="Only runs of this pipeline.")] = None,
    output: OutputOpt = None,
) -> None:
    """List the namespace's runs, newest first."""
    client = _connection(ctx).client()
    runs = client.list_run_objects(pipeline)
    if output:
        _emit([result_of(r).to_dict() for r in runs], output)
        return
    if not runs:
        print(f"no runs in namespace {client.namespace}")
        return
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in ("NAME", "PIPELINE", "PHASE", "STAGES", "AGE", "DURATION"):
        table.add_column(column, no_wrap=True)
    now = datetime.now(UTC)
    for run in runs:
        result = result_of(run)
        done = sum(1 for s in result.stages.values() if s.phase.finished)
        created = run.metadata.get("creationTimestamp")
        age = (now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds() \
            if created else None
        table.add_row(result.name, pipeline_name(run) or "-", result.phase.value,
                      f"{done}/{len(result.stages)}", format_seconds(age),
                      format_seconds(result.duration_seconds))
    _console().print(table)


@app.command("watch")
def watch_run(ctx: typer.Context, run: RunArg, timeout: TimeoutOpt = None,
              output: OutputOpt = None) -> None:
    """Watch a run until it ends, and exit with its exit code."""
    handle = _connection(ctx).client().run(run)
    raise typer.Exit(_finish(handle, watch=True, timeout=timeout, output=output))


@app.command()
def logs(
    ctx: typer.Context,
    run: RunArg,
    stage: Annotated[str | None, typer.Option(help="Only this stage.")] = None,
    index: Annotated[int | None, typer.Option(
        min=0, help="Only this fan-out index (completion index).")] = None,
    follow: Annotated[bool, typer.Option(
        "-f", "--follow", help="Keep streaming, through stages that start later, until the "
        "run ends.")] = False,
    output: OutputOpt = None,
) -> None:
    """Print the logs of a run's pods in DAG order, each line prefixed [stage:index]."""
    handle = _connection(ctx).client().run(run)
    lines = handle.logs(stage=stage, index=index, follow=follow)
    if output == OutputFormat.YAML:
        _emit([_log_record(line) for line in lines], output)
        return
    for line in lines:
        text = json.dumps(_log_record(line)) if output else str(line)
        print(text, flush=True)


def _log_record(line: Any) -> dict[str, Any]:
    return {"stage": line.stage, "index": line.index, "attempt": line.attempt,
            "text": line.text, "note": line.note}


# --- steering ----------------------------------------------------------------------------

@app.command()
def retry(
    ctx: typer.Context,
    run: RunArg,
    from_stage: Annotated[str | None, typer.Option(
        "--from", help="Run this stage and everything after it again, even where they "
        "succeeded (spec.rerunStages); the other succeeded stages are reused.")] = None,
    watch: WatchOpt = False,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = None,
    output: OutputOpt = None,
) -> None:
    """Start a new run that reuses this run's succeeded stages (spec.resumeFrom)."""
    if watch and wait:
        raise UsageError("--watch and --wait exclude each other")
    handle = _connection(ctx).client().run(run).retry(from_stage=from_stage)
    _say(f"run {handle.name} created, resuming from {run if run != '@latest' else 'the latest'}",
         output)
    if watch or wait or timeout is not None:
        raise typer.Exit(_finish(handle, watch=watch, timeout=timeout, output=output))
    if output:
        _emit(handle.result().to_dict(), output)


def _steer(ctx: typer.Context, run: str, action: Callable[[RunHandle], None], done: str) -> None:
    handle = _connection(ctx).client().run(run)
    action(handle)
    print(f"run {handle.name} {done}")


@app.command()
def suspend(ctx: typer.Context, run: RunArg) -> None:
    """Start no new stages (running ones finish); the run shows Paused."""
    _steer(ctx, run, RunHandle.suspend, "suspended")


@app.command()
def resume(ctx: typer.Context, run: RunArg) -> None:
    """Let a suspended run start stages again."""
    _steer(ctx, run, RunHandle.resume, "resumed")


@app.command()
def cancel(ctx: typer.Context, run: RunArg) -> None:
    """Stop a run for good: running stages are stopped, the run ends Cancelled."""
    _steer(ctx, run, RunHandle.cancel, "cancelled")


# --- offline -------------------------------------------------------------------------------

@app.command()
def lint(
    file: Annotated[str, typer.Argument(help="Pipeline YAML, or pkg.module:attr.")],
    output: OutputOpt = None,
) -> None:
    """Check a pipeline offline: schema, DAG and cycles, CEL, $(...) references, params."""
    try:
        loaded = load(file)
    except LoadError as error:
        if output:
            _emit({"source": file, "valid": False, "errors": error.errors}, output)
        else:
            for problem in error.errors:
                print(f"{file}: {problem}")
        raise typer.Exit(EXIT_USAGE) from None
    spec = loaded.spec
    stages = len(spec.all_stages()) if spec is not None else None
    if output:
        _emit({"source": file, "valid": True, "errors": [], "stages": stages}, output)
    elif spec is None and loaded.run is not None and loaded.run.spec.pipeline_ref is not None:
        print(f"{file}: valid; its pipeline {loaded.run.spec.pipeline_ref.name!r} is not in "
              "the file and was not checked")
    else:
        print(f"{file}: valid ({stages} stages)")


@app.command()
def graph(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(
        help="Pipeline YAML, pkg.module:attr, or a run name (@latest) to colour by phase.")],
    fmt: Annotated[GraphFormatOption, typer.Option(
        "--format", help="dot (Graphviz) or mermaid.")] = GraphFormatOption.DOT,
) -> None:
    """Print a pipeline's graph; a run's graph is coloured by stage phase."""
    if Path(source).is_file() or PYTHON_REFERENCE.match(source):
        loaded = load(source)
        if loaded.spec is None:
            raise UsageError(f"{source}: the run's pipelineRef names no Pipeline in the file")
        print(render_graph(loaded.spec, fmt.value, name=loaded.name), end="")
        return
    client = _connection(ctx).client()
    handle = client.run(source)
    run = handle.get()
    spec = (run.status.pipeline_spec if run.status else None) or run.spec.pipeline_spec
    if spec is None and run.spec.pipeline_ref is not None:
        spec = client.get_pipeline(run.spec.pipeline_ref.name).spec
    if spec is None:
        raise UsageError(f"run {handle.name} has no pipeline to draw yet")
    phases = {name: stage.phase for name, stage in result_of(run).stages.items()}
    print(render_graph(spec, fmt.value, name=handle.name, phases=phases), end="")


# --- templates -----------------------------------------------------------------------------

templates_app = typer.Typer(help="Ready-made pipelines: document processing, RAG, knowledge "
                            "graph. Run one with `kubedag run --local template:NAME` or "
                            "`kubedag submit -f template:NAME`.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")


@templates_app.command("ls")
def templates_ls(
    category: Annotated[str | None, typer.Option(help="Only templates of this category.")]
    = None,
    output: OutputOpt = None,
) -> None:
    """List the templates."""
    infos = list_templates(category)
    if output:
        _emit([_template_record(info) for info in infos], output)
        return
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in ("NAME", "CATEGORY", "STAGES", "DESCRIPTION"):
        table.add_column(column, no_wrap=column != "DESCRIPTION")
    for info in infos:
        table.add_row(info.name, info.category, str(len(info.stages)), info.description)
    _console().print(table)


@templates_app.command("show")
def templates_show(
    name: Annotated[str, typer.Argument(help="Template name (see kubedag templates ls).")],
    output: OutputOpt = None,
) -> None:
    """Describe a template and print its Pipeline manifest; with -o yaml|json, the manifest
    alone (ready for `kubectl apply -f` or `kubedag run --local`)."""
    try:
        info, pipeline = template_info(name), from_template(name)
    except UnknownTemplateError as error:
        raise UsageError(str(error)) from None
    if output:
        _emit(pipeline.to_document(), output)
        return
    print(f"Name:        {info.name}\nCategory:    {info.category}\n"
          f"Description: {info.description}")
    for param in info.params:
        default = f" (default {json.dumps(param.default)})" if param.default is not None else ""
        print(f"Param:       {param.name}: {param.type.value}{default}"
              + (f" - {param.description}" if param.description else ""))
    for stage in info.stages:
        print(f"Stage:       {stage}" + (f" ({info.processors[stage]})"
                                         if stage in info.processors else ""))
    print()
    print(pipeline.to_yaml(), end="")


def _template_record(info: TemplateInfo) -> dict[str, Any]:
    return {"name": info.name, "category": info.category, "description": info.description,
            "stages": list(info.stages), "processors": dict(info.processors),
            "params": [to_k8s(p) for p in info.params], "source": info.source}


# --- local runs ----------------------------------------------------------------------------

@app.command("run")
def run_command(
    file: Annotated[str, typer.Argument(help="Pipeline YAML, or pkg.module:attr.")],
    local: Annotated[bool, typer.Option(
        "--local", help="Run on this machine: each stage a local kubedag-worker process, "
        "scheduled by the operator's own decision core.")] = False,
    param: Annotated[list[str] | None, typer.Option(
        "-p", "--param", help="NAME=VALUE, as for submit. Repeatable.")] = None,
    workspace: Annotated[Path | None, typer.Option(
        help="Directory shared by the stages (default: a new temporary one, kept).")] = None,
    timeout: TimeoutOpt = None,
    output: OutputOpt = None,
) -> None:
    """Run a pipeline locally (--local) and exit with the run's exit code."""
    if not local:
        raise UsageError("kubedag run needs --local (to run on a cluster: kubedag submit)")
    loaded = load(file)
    params = parse_params(param or [], declared_types(loaded.spec))
    run = _run_to_submit(loaded, params, None)
    if run.spec.pipeline_spec is None:
        if loaded.spec is None:
            raise UsageError(f"{file}: a local run needs the pipeline itself, not a "
                             "pipelineRef to one on a cluster")
        run.spec = run.spec.model_copy(update={"pipeline_spec": loaded.spec,
                                               "pipeline_ref": None})
    run.metadata = {**run.metadata, "name": run.metadata.get("name") or loaded.name}
    try:
        result, timed_out = run_locally(run, workspace=workspace, timeout=timeout,
                                        stream=sys.stderr if output else sys.stdout)
    except ValueError as error:  # what kubedag.local cannot run at all
        raise UsageError(str(error)) from None
    if output:
        _emit(result.to_dict(), output)
    if timed_out:
        print(f"timed out: local run {result.name} cancelled after {timeout:g} s",
              file=sys.stderr)
        raise typer.Exit(EXIT_TIMED_OUT)
    raise typer.Exit(result.exit_code)


# --- entry point ---------------------------------------------------------------------------

_GLOBAL_WITH_VALUE = ("--kubeconfig", "--context", "--namespace", "-n")


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Move global options written after the command to the front, so that
    `kubedag get r -n ns` works as `kubectl get r -n ns` does."""
    hoisted: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in _GLOBAL_WITH_VALUE and i + 1 < len(argv):
            hoisted.extend(argv[i:i + 2])
            i += 2
            continue
        if any(arg.startswith(f"{option}=") for option in _GLOBAL_WITH_VALUE):
            hoisted.append(arg)
        else:
            rest.append(arg)
        i += 1
    return hoisted + rest


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code (see the module docstring's table)."""
    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    prog = Path(sys.argv[0]).name if argv is None else "kubedag"
    command = typer.main.get_command(app)
    try:
        returned = command.main(args=args, prog_name=prog, standalone_mode=False)
    except typer.Exit as done:
        return int(done.exit_code)
    except typer.TyperException as error:  # bad flags, missing arguments, unknown command
        print(f"error: {error.format_message()} (see {prog} --help)", file=sys.stderr)
        return EXIT_USAGE
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LoadError as error:
        for problem in error.errors:
            print(f"error: {error.source}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except (ClientError, UsageError, ParamError, PipelineDefinitionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # a bug: still one line, the traceback on request
        if os.environ.get(DEBUG_VARIABLE):
            raise
        print(f"error: unexpected {type(error).__name__}: {error} (set {DEBUG_VARIABLE}=1 "
              "for the traceback)", file=sys.stderr)
        return EXIT_USAGE
    return returned if isinstance(returned, int) else EXIT_SUCCEEDED


if __name__ == "__main__":
    sys.exit(main())

"""Showing a run to people: the stage tree, transition lines, and the live views of `watch`.

The tree and the transition lines are built from `RunResult` by pure functions (tested without
a terminal); the three live views only decide where they go: a `rich` Live table in a
terminal, `tqdm.auto` bars in Jupyter, plain lines when the output is a file or a pipe (CI
logs read best with one line per change, not with redrawn screens).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kubedag.api import RunPhase, StagePhase
from kubedag.core.runview import RunResult, StageResult, format_seconds, phase_glyph

PHASE_STYLES: dict[str, str] = {
    "Pending": "dim",
    "Running": "cyan",
    "Retrying": "yellow",
    "Paused": "yellow",
    "Succeeded": "green",
    "Failed": "red",
    "Skipped": "dim",
    "Cancelled": "magenta",
}
TREE_COLUMNS = ("STAGE", "PHASE", "ATTEMPT", "FAN-OUT", "WAIT", "RUN", "MESSAGE")
_MESSAGE_WIDTH = 80


@dataclass(frozen=True)
class TreeRow:
    """One line of the run tree: the branch drawing, then the columns of TREE_COLUMNS."""

    branch: str
    glyph: str
    name: str
    phase: str
    attempt: str
    fan_out: str
    wait: str
    run: str
    message: str

    @property
    def label(self) -> str:
        """The glyph and the name (branch rows such as "finally" have no glyph)."""
        return f"{self.glyph} {self.name}" if self.glyph else self.name

    def cells(self) -> tuple[str, ...]:
        return (f"{self.branch}{self.label}", self.phase, self.attempt, self.fan_out,
                self.wait, self.run, self.message)


def tree_rows(result: RunResult) -> list[TreeRow]:
    """The run as a tree: the run at the root, its stages in DAG order, finally stages in a
    branch of their own (they run after everything else, whatever happened)."""
    rows = [TreeRow("", phase_glyph(result.phase), result.name, result.phase.value, "", "",
                    "", format_seconds(result.duration_seconds), _one_line(result.message))]
    main = [s for s in result.stages.values() if not s.is_finally]
    finals = [s for s in result.stages.values() if s.is_finally]
    for i, stage in enumerate(main):
        last = i == len(main) - 1 and not finals
        rows.append(_stage_row(stage, "└─ " if last else "├─ "))
    if finals:
        rows.append(TreeRow("└─ ", "", "finally", "", "", "", "", "", ""))
        for i, stage in enumerate(finals):
            rows.append(_stage_row(stage, "   └─ " if i == len(finals) - 1 else "   ├─ "))
    return rows


def _stage_row(stage: StageResult, branch: str) -> TreeRow:
    attempt = f"{stage.attempts}/{stage.max_attempts}" if stage.attempts else ""
    fan_out = (f"{stage.fanout_done or 0}/{stage.fanout_total}"
               if stage.fanout_total is not None else "")
    message = stage.message or ""
    if stage.reason and stage.phase not in (StagePhase.SUCCEEDED, StagePhase.RUNNING):
        message = f"{stage.reason}: {message}" if message else stage.reason
    if stage.fallback_phase is not None:
        # Failed → recovered by fallback (or: fallback running, fallback failed ...).
        outcome = ("recovered by fallback" if stage.recovered
                   else f"fallback {stage.fallback_phase.value.lower()}")
        message = f"→ {outcome} ({message})" if message else f"→ {outcome}"
    return TreeRow(branch, phase_glyph(stage.phase), stage.name, stage.phase.value, attempt,
                   fan_out, format_seconds(stage.wait_seconds),
                   format_seconds(stage.run_seconds), _one_line(message))


def _one_line(text: str | None) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= _MESSAGE_WIDTH else line[: _MESSAGE_WIDTH - 1] + "…"


def run_table(result: RunResult) -> Table:
    """The tree as a rich Table, coloured by phase (used by `kubedag get` and live views)."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in TREE_COLUMNS:
        table.add_column(column, no_wrap=column != "MESSAGE")
    for row in tree_rows(result):
        style = PHASE_STYLES.get(row.phase, "")
        first = Text(row.branch)
        first.append(row.label, style=style)
        table.add_row(first, Text(row.phase, style=style), *row.cells()[2:])
    return table


def transitions(before: RunResult | None, after: RunResult, now: datetime) -> list[str]:
    """One line per change between two views of a run: the run's phase, each stage's phase
    or attempt. The first view reports the run and every stage that is not Pending, or is
    Pending for a reason (its pods wait for a node: Unschedulable)."""
    clock = now.strftime("%H:%M:%S")
    lines: list[str] = []
    if before is None or before.phase != after.phase:
        text = f"{clock} run {after.name} {after.phase.value}"
        if after.phase.finished:
            text += f" after {format_seconds(after.duration_seconds)}"
            if after.message:
                text += f": {_one_line(after.message)}"
        lines.append(text)
    for name, stage in after.stages.items():
        old = before.stages.get(name) if before is not None else None
        unchanged = (old is not None and old.phase == stage.phase
                     and old.attempts == stage.attempts)
        if unchanged or (old is None and stage.phase == StagePhase.PENDING
                         and not stage.reason):
            continue
        lines.append(f"{clock} {phase_glyph(stage.phase)} {name} {_stage_detail(stage)}")
    if after.phase.finished and lines and lines[0].startswith(f"{clock} run "):
        lines.append(lines.pop(0))  # the run's end comes after its stages' ends
    return lines


def _stage_detail(stage: StageResult) -> str:
    text = stage.phase.value
    if stage.max_attempts > 1 and stage.attempts:
        text += f" (attempt {stage.attempts}/{stage.max_attempts})"
    if stage.phase.finished and stage.run_seconds is not None:
        text += f" in {format_seconds(stage.run_seconds)}"
    why = stage.reason if stage.phase not in (StagePhase.SUCCEEDED, StagePhase.RUNNING) else None
    if why or (stage.message and stage.phase in (StagePhase.FAILED, StagePhase.RETRYING)):
        text += ": " + _one_line(": ".join(p for p in (why, stage.message) if p))
    return text


class Display(Protocol):
    """Where `RunHandle.watch` shows each new view of the run."""

    def update(self, result: RunResult) -> None: ...

    def close(self) -> None: ...


class LineDisplay:
    """One line per transition, for pipes, files and CI logs."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.last: RunResult | None = None

    def update(self, result: RunResult) -> None:
        for line in transitions(self.last, result, datetime.now()):
            print(line, file=self.stream, flush=True)
        self.last = result

    def close(self) -> None:
        pass


class LiveDisplay:
    """The run tree, redrawn in place in a terminal; the last drawing stays on screen."""

    def __init__(self, stream: IO[str]) -> None:
        self.live = Live(console=Console(file=stream), auto_refresh=False)
        self.live.start()

    def update(self, result: RunResult) -> None:
        self.live.update(run_table(result), refresh=True)

    def close(self) -> None:
        self.live.stop()


class NotebookDisplay:
    """`tqdm.auto` bars in Jupyter: one for the run (stages finished) and one per stage
    (fan-out items, else 0/1), each with its phase as text."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def update(self, result: RunResult) -> None:
        from tqdm.auto import tqdm  # noqa: PLC0415 (only in notebooks)

        stages = list(result.stages.values())
        if not self.bars:
            self.bars[""] = tqdm(total=len(stages), desc=result.name, unit="stage")
            for stage in stages:
                self.bars[stage.name] = tqdm(total=1, desc=f"  {stage.name}", leave=True)
        overall = self.bars[""]
        overall.n = sum(1 for s in stages if s.phase.finished)
        overall.set_postfix_str(result.phase.value, refresh=False)
        overall.refresh()
        for stage in stages:
            bar = self.bars.get(stage.name)
            if bar is None:
                continue
            bar.total = stage.fanout_total or 1
            bar.n = (stage.fanout_done or 0) if stage.fanout_total else int(stage.phase.done)
            bar.set_postfix_str(_stage_detail(stage), refresh=False)
            bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def in_notebook() -> bool:
    """Whether we run inside a Jupyter kernel (IPython's ZMQ shell), without importing IPython."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def choose_display(live: bool | None, stream: IO[str] | None = None) -> Display:
    """Lines when `live` is False or the output is no terminal (None: decide by the output);
    bars in a notebook; else the live table."""
    out = stream or sys.stdout
    if live is False:
        return LineDisplay(out)
    if in_notebook():
        return NotebookDisplay()
    if live or out.isatty():
        return LiveDisplay(out)
    return LineDisplay(out)


def run_phase_style(phase: RunPhase | StagePhase) -> str:
    """The colour of a phase, for other views (graphs, listings)."""
    return PHASE_STYLES.get(phase.value, "")

"""`kubedag graph`: a pipeline's DAG as Graphviz DOT or Mermaid, a run's coloured by phase.

The drawing itself is `kubedag.core.dag.to_dot` / `to_mermaid` (the operator's own graph
code); this module adds what a picture of a pipeline needs beyond the main DAG: finally stages
after the main stages' last ones, and one fill colour per stage phase.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from kubedag.api import PipelineSpec, StagePhase
from kubedag.core.dag import Dag, Node, build, to_dot, to_mermaid

GraphFormat = Literal["dot", "mermaid"]

PHASE_COLOURS: Final[dict[StagePhase, str]] = {
    StagePhase.PENDING: "#ffffff",
    StagePhase.RUNNING: "#bbdefb",
    StagePhase.RETRYING: "#fff59d",
    StagePhase.SUCCEEDED: "#c8e6c9",
    StagePhase.FAILED: "#ffcdd2",
    StagePhase.SKIPPED: "#eeeeee",
    StagePhase.CANCELLED: "#e1bee7",
}


def pipeline_dag(spec: PipelineSpec) -> Dag:
    """Main and finally stages in one graph: a finally stage with no finally dependency is
    drawn after the main DAG's last stages (it runs once all of them are done)."""
    main_names = {s.name for s in spec.stages}
    dependants = {d for s in spec.stages for d in s.depends_on or []}
    last_main = [s.name for s in spec.stages if s.name not in dependants]
    nodes = [Node(s.name, tuple(s.depends_on or ())) for s in spec.stages]
    for final in spec.finally_ or []:
        deps = list(final.depends_on or [])
        if all(d in main_names for d in deps):
            deps = list(dict.fromkeys([*deps, *last_main]))
        nodes.append(Node(final.name, tuple(deps)))
    return build(nodes)


def render_graph(spec: PipelineSpec, fmt: GraphFormat, *, name: str = "pipeline",
                 phases: Mapping[str, StagePhase] | None = None) -> str:
    """The pipeline as `fmt` text; with `phases` (a run's) each stage is labelled with its
    phase and filled with the phase's colour."""
    dag = pipeline_dag(spec)
    states = {stage: phase.value for stage, phase in (phases or {}).items()}
    if fmt == "dot":
        text = to_dot(dag, states or None, name=name)
        styles = [f'  "{_dot_escape(stage)}" [style=filled, '
                  f'fillcolor="{PHASE_COLOURS[phase]}"];'
                  for stage, phase in (phases or {}).items() if stage in dag]
        return _before_last_line(text, styles, closing="}")
    text = to_mermaid(dag, states or None)
    # to_mermaid numbers nodes s0, s1, ... in declaration order (Mermaid ids allow no '-').
    ids = {stage: f"s{i}" for i, stage in enumerate(dag.order)}
    styles = [f"  style {ids[stage]} fill:{PHASE_COLOURS[phase]}"
              for stage, phase in (phases or {}).items() if stage in ids]
    return text + "".join(f"{line}\n" for line in styles)


def _dot_escape(text: str) -> str:
    return text.replace('"', '\\"')


def _before_last_line(text: str, lines: list[str], *, closing: str) -> str:
    body = text.rstrip("\n")
    assert body.endswith(closing)
    head = body[: -len(closing)]
    return head + "".join(f"{line}\n" for line in lines) + closing + "\n"

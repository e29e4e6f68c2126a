"""Stages in dependency order (the pipeline is validated acyclic before anything asks)."""

from __future__ import annotations

import graphlib
from collections.abc import Sequence

from kubedag.api import PipelineSpec, Stage
from kubedag.core.memo import WeakMemo


def in_dag_order(stages: Sequence[Stage]) -> list[Stage]:
    """Dependencies first; dependencies outside ``stages`` (main stages, for finally) ignored."""
    by_name = {s.name: s for s in stages}
    sorter = graphlib.TopologicalSorter(
        {s.name: [d for d in s.depends_on or [] if d in by_name] for s in stages})
    return [by_name[n] for n in sorter.static_order()]


def _orders(pipeline: PipelineSpec) -> tuple[tuple[Stage, ...], tuple[Stage, ...]]:
    return (tuple(in_dag_order(pipeline.stages)), tuple(in_dag_order(pipeline.finally_ or [])))


_pipeline_orders = WeakMemo(_orders)


def pipeline_order(pipeline: PipelineSpec) -> tuple[Sequence[Stage], Sequence[Stage]]:
    """(main stages, finally stages), each in dependency order, computed once per spec
    instance: every pass of a run walks them, and sorting a 900-stage lattice on each pass was
    a seventh of the operator's CPU (py-spy, `make bench`). A spec is not changed once
    validated; one that is must not be passed to the core again."""
    return _pipeline_orders(pipeline)


def all_in_order(pipeline: PipelineSpec) -> list[Stage]:
    """The main stages in DAG order, then the finally stages in theirs (which report on the
    whole main DAG)."""
    main, final = pipeline_order(pipeline)
    return [*main, *final]

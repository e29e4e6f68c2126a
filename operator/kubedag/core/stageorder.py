"""Stages in dependency order (the pipeline is validated acyclic before anything asks)."""

from __future__ import annotations

import graphlib
from collections.abc import Sequence

from kubedag.api import Stage


def in_dag_order(stages: Sequence[Stage]) -> list[Stage]:
    """Dependencies first; dependencies outside ``stages`` (main stages, for finally) ignored."""
    by_name = {s.name: s for s in stages}
    sorter = graphlib.TopologicalSorter(
        {s.name: [d for d in s.depends_on or [] if d in by_name] for s in stages})
    return [by_name[n] for n in sorter.static_order()]

"""The benchmark DAGs: {stage name: [dependencies]}, in a topological order.

The API allows at most 1,000 stages per pipeline and 64 dependencies per stage, so the fan-out
is 1 → 982 → 16 → 1 (1,000 stages): the sink cannot depend on 982 stages directly, so 16 join
stages each gather a contiguous block of at most 62 of them. The lattice uses adjacent columns:
a stage of row r depends on the stages of row r-1 at columns c-1, c and c+1.
"""

from __future__ import annotations

Dag = dict[str, list[str]]

MAX_DEPENDENCIES = 64


def chain(length: int) -> Dag:
    names = [f"s{i:03d}" for i in range(length)]
    return {name: ([names[i - 1]] if i else []) for i, name in enumerate(names)}


def fan_out(width: int, joins: int) -> Dag:
    middle = [f"m{i:04d}" for i in range(width)]
    dag: Dag = {"src": []}
    dag.update({name: ["src"] for name in middle})
    size = -(-width // joins)
    assert size <= MAX_DEPENDENCIES, size
    join_names = []
    for j in range(joins):
        block = middle[j * size:(j + 1) * size]
        if block:
            dag[f"j{j:02d}"] = block
            join_names.append(f"j{j:02d}")
    dag["sink"] = join_names
    return dag


def lattice(rows: int, columns: int) -> Dag:
    dag: Dag = {}
    for r in range(rows):
        for c in range(columns):
            deps = ([] if r == 0 else
                    [f"r{r - 1:02d}c{cc:02d}" for cc in (c - 1, c, c + 1) if 0 <= cc < columns])
            dag[f"r{r:02d}c{c:02d}"] = deps
    return dag


def layered(widths: list[int]) -> Dag:
    """Rows of the given widths, each stage depending on every stage of the row before.

    Names are ``l<row>c<column>``, without ``-``: the same names must be valid Argo task names
    (bench/argo.py), and ``-`` is an operator in Argo's dependency expressions."""
    dag: Dag = {}
    previous: list[str] = []
    for r, width in enumerate(widths):
        row = [f"l{r}c{c}" for c in range(width)]
        for name in row:
            dag[name] = list(previous)
        previous = row
    return dag


def dependents(dag: Dag) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in dag}
    for name, deps in dag.items():
        for dep in deps:
            out[dep].append(name)
    return out

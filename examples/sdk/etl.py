"""A pipeline written with decorators: each stage is a plain, typed Python function.

    kubedag submit -f examples.sdk.etl:pipeline --wait     # or, in Python:
    from examples.sdk.etl import pipeline; pipeline.submit(params={"rows": [3, 1, 2]}).wait()

A parameter after the context names an upstream stage and receives its outputs; the returned
dict becomes this stage's outputs. The stage pod imports this module to find the function
(it must be importable there: install it in your worker image), so keep it free of work at
import time. `mypy --strict` checks it with no ignore comment (tests/unit/sdk).
"""

from __future__ import annotations

from typing import Any

from kubedag.sdk import Pipeline
from kubedag.worker import Context

pipeline = Pipeline(
    "etl",
    image="ghcr.io/kubedag/worker:0.1.0",
    params={"rows": list, "scale": 10},
    description="Extract numbers, scale them, and report their total.",
)


@pipeline.task(estimated_seconds=20, resources={"cpu": "500m", "memory": "256Mi"})
def extract(ctx: Context) -> dict[str, Any]:
    rows = [int(row) for row in ctx.params["rows"]]
    return {"rows": rows, "count": len(rows)}


@pipeline.task(retry=2, timeout=300, estimated_seconds=60)
def transform(ctx: Context, extract: dict[str, Any]) -> dict[str, Any]:
    scale = int(ctx.params["scale"])
    return {"scaled": [row * scale for row in extract.get("rows", [])]}


@pipeline.task("load-totals", estimated_seconds=10)
def load_totals(ctx: Context, extract: dict[str, Any], transform: dict[str, Any]) -> dict[str, Any]:
    return {"total": sum(transform.get("scaled", [])), "rows": extract.get("count", 0)}

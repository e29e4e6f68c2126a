"""Processors the local-run tests run through the real worker (`kubedag-worker run`)."""

from __future__ import annotations

import os
from typing import Any

from kubedag.worker.context import Context


def describe(context: Context) -> dict[str, Any]:
    """What the stage was given: its batch of fan-out items, its inputs, its index."""
    (context.workspace / f"{context.stage}-{os.getpid()}.pid").write_text(str(os.getpid()))
    return {"items": list(context.items), "inputs": dict(context.inputs),
            "index": int(os.environ.get("JOB_COMPLETION_INDEX", "-1")),
            "podName": os.environ.get("KUBEDAG_POD_NAME"), "run": context.run}

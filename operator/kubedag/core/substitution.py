"""`$(params.x)` and `$(stages.s.outputs.k)` substitution in args and env, as in Tekton.

Non-string values are written as JSON, so a list param passes as `["a","b"]`. An unknown
reference is an error rather than an empty string: a typo must not silently run a stage with
a blank argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kubedag.core.expressions import render_value

REFERENCE = re.compile(r"\$\((params\.[A-Za-z_][A-Za-z0-9_]*|"
                       r"stages\.[a-z0-9]([-a-z0-9]*[a-z0-9])?\.outputs\.[A-Za-z_][A-Za-z0-9_]*)\)")


class SubstitutionError(ValueError):
    """A reference names a param or an output that does not exist."""


def substitute(
    text: str, params: Mapping[str, Any], outputs: Mapping[str, Mapping[str, Any] | None]
) -> str:
    def replace(match: re.Match[str]) -> str:
        path = match.group(1).split(".")
        if path[0] == "params":
            if path[1] not in params:
                raise SubstitutionError(f"unknown param {path[1]!r} in {match.group(0)}")
            return render_value(params[path[1]])
        stage, key = path[1], path[3]
        stage_outputs = outputs.get(stage)
        if stage_outputs is None or key not in stage_outputs:
            raise SubstitutionError(f"stage {stage!r} has no output {key!r} ({match.group(0)})")
        return render_value(stage_outputs[key])

    return REFERENCE.sub(replace, text)


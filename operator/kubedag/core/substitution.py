"""`$(params.x)` and `$(stages.s.outputs.k)` substitution in args and env, as in Tekton.

Non-string values are written as JSON, so a list param passes as `["a","b"]`. An unknown
reference is an error rather than an empty string: a typo must not silently run a stage with
a blank argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kubedag.core.expressions import SUBSTITUTION, parse_reference, render_value


class SubstitutionError(ValueError):
    """A reference names a param or an output that does not exist."""


def substitute(
    text: str, params: Mapping[str, Any], outputs: Mapping[str, Mapping[str, Any] | None]
) -> str:
    def replace(match: re.Match[str]) -> str:
        reference = parse_reference(match.group(1))
        if reference is None:
            return match.group(0)  # not a reference; validation reports malformed ones
        if reference[0] == "params":
            if reference[1] not in params:
                raise SubstitutionError(f"unknown param {reference[1]!r} in {match.group(0)}")
            return render_value(params[reference[1]])
        stage, key = reference[1], str(reference[2])
        stage_outputs = outputs.get(stage)
        if stage_outputs is None or key not in stage_outputs:
            raise SubstitutionError(f"stage {stage!r} has no output {key!r} ({match.group(0)})")
        return render_value(stage_outputs[key])

    return SUBSTITUTION.sub(replace, text)


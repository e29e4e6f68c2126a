"""`-p NAME=VALUE` options: values as YAML scalars or JSON, typed by the pipeline's declarations.

`-p n=3` gives the int 3, `-p files='["a","b"]'` a list, `-p debug=true` a bool. A parameter the
pipeline declares as a string keeps the text exactly as typed, so `-p version=1.10` stays
"1.10" instead of becoming the float 1.1 (YAML's reading).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from kubedag.api import ParamType, PipelineSpec


class ParamError(ValueError):
    """A malformed `-p` option; the message names the parameter."""


def parse_params(options: Sequence[str],
                 declared: Mapping[str, ParamType] | None = None) -> dict[str, Any]:
    """The values of `-p NAME=VALUE` options (a later option for a name wins)."""
    values: dict[str, Any] = {}
    for option in options:
        name, sep, text = option.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParamError(f"-p {option}: expected NAME=VALUE")
        if declared is not None and declared.get(name) == ParamType.STRING:
            values[name] = text
            continue
        try:
            values[name] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ParamError(f"-p {name}: malformed value {text!r} ({problem}); "
                             "write a YAML scalar or JSON, e.g. -p n=3 or "
                             "-p files='[\"a\",\"b\"]'") from None
    return values


def declared_types(spec: PipelineSpec | None) -> dict[str, ParamType]:
    """Each declared parameter's type, for `parse_params`."""
    return {p.name: p.type for p in (spec.params or [])} if spec is not None else {}

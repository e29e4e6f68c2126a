"""Friendly Python values → the fields of `kubedag.api.Stage` and `ParamSpec`.

`add_step(retry=3, timeout=600, fan_out=["a", "b"], env={"LANG": "de"})` reads better than the
manifest's nesting; this module turns such values into what the API models take, and nothing
more: validation stays with the models (at `build()`), so there is one set of rules.

Import-light (standard library only): it runs when the worker imports a user's module.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kubedag.sdk.errors import PipelineDefinitionError

if TYPE_CHECKING:
    from kubedag.api import EnvVar, FanOut, OutputSpec, ParamSpec, RetryPolicy

Seconds = int | float | timedelta
# `Pipeline(params={...})`: a Python type declares a required parameter of that type, any other
# value a parameter with that default (its type inferred from the value).
PARAM_TYPES: Mapping[type, str] = {
    bool: "bool", int: "int", float: "float", str: "string", list: "array", dict: "object",
}


def seconds(value: Seconds, *, step: str, field: str) -> int:
    """Whole seconds, rounded up (a deadline must not shrink), from a number or a timedelta."""
    number = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise PipelineDefinitionError(
            f"step {step!r}: {field} must be a number of seconds or a timedelta, "
            f"got {value!r}"
        )
    return math.ceil(number)


def retry_policy(value: RetryPolicy | int | Mapping[str, Any]) -> Any:
    """`retry=3` means three retries with the default backoff."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {"limit": value}
    return value


def fan_out(value: FanOut | Sequence[Any] | str | Mapping[str, Any]) -> Any:
    """A list of items, `"$(params.files)"` for an array parameter, or a FanOut/dict as is."""
    if isinstance(value, str):
        return {"itemsFrom": value}
    if isinstance(value, Sequence):
        return {"items": list(value)}
    return value


def env_vars(value: Mapping[str, str] | Sequence[EnvVar | Mapping[str, Any]]) -> list[Any]:
    """`{"LANG": "de"}` or a list of EnvVar / dicts (needed for valueFrom)."""
    if isinstance(value, Mapping):
        return [{"name": name, "value": text} for name, text in value.items()]
    return list(value)


def output_specs(
    value: Mapping[str, str] | Sequence[str | OutputSpec | Mapping[str, Any]],
) -> list[Any]:
    """`["pages"]`, `{"pages": "number of pages"}` or OutputSpec / dicts."""
    if isinstance(value, Mapping):
        return [{"name": name, "description": text} for name, text in value.items()]
    return [{"name": item} if isinstance(item, str) else item for item in value]


def string_list(value: Sequence[str], *, step: str, field: str) -> list[str]:
    """command / args: a list, never a bare string (which would be split into characters)."""
    if isinstance(value, str):
        raise PipelineDefinitionError(
            f"step {step!r}: {field} must be a list of strings, e.g. [\"sh\", \"-c\", "
            f"\"echo hi\"], not the string {value!r}"
        )
    return list(value)


def param_specs(params: Sequence[ParamSpec | Mapping[str, Any]] | Mapping[str, Any]) -> list[Any]:
    """ParamSpec / dicts as they are, or a `{name: type-or-default}` mapping converted.

    `{"files": list, "language": "en", "size": ParamSpec(type="int", default=3)}`: `files` is
    a required array, `language` a string defaulting to "en"; a ParamSpec (or dict) value is
    used with the key as its name.
    """
    if not isinstance(params, Mapping):
        return list(params)
    declared: list[Any] = []
    for name, value in params.items():
        if isinstance(value, type) or typing.get_origin(value) is not None:
            declared.append({"name": name, "type": _param_type(name, value)})
        elif value is None:
            raise PipelineDefinitionError(
                f"param {name!r}: None is no default (a param without a default is required); "
                "give its type instead, e.g. {'" + name + "': str}"
            )
        elif isinstance(value, Mapping) and "type" in value:
            declared.append({"name": name, **value})
        elif hasattr(value, "model_copy"):  # a ParamSpec: the key names it
            declared.append(value.model_copy(update={"name": name}))
        else:
            declared.append({"name": name, "type": _param_type(name, type(value)),
                             "default": value})
    return declared


def _param_type(name: str, annotation: Any) -> str:
    origin = typing.get_origin(annotation) or annotation
    if isinstance(origin, type):
        for python_type, param_type in PARAM_TYPES.items():
            if issubclass(origin, python_type):
                return param_type
    raise PipelineDefinitionError(
        f"param {name!r}: no parameter type for {annotation!r}; use one of "
        f"{', '.join(t.__name__ for t in PARAM_TYPES)} (or a default value of one of them)"
    )

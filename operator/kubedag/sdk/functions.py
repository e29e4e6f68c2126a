"""Python functions as stage processors: the `module:function` reference the worker imports,
and which upstream stages' outputs the function takes.

The worker runs a processor by importing it by name in a fresh process inside the stage's
image, so only a function that such an import can find will do: defined with `def` at the top
level of a module that is importable (not `__main__`, not a notebook cell). Everything else is
refused here, when the pipeline is written, rather than failing later in a pod.

Import-light on purpose (standard library only): the worker imports the user's module, and
with it this one, in an image without pydantic.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from kubedag import contract
from kubedag.sdk.errors import PipelineDefinitionError

_PASSABLE = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def processor_reference(function: Callable[..., Any], *, step: str) -> str:
    """`module:function` for a module-level function, or a PipelineDefinitionError saying how
    to make it one."""
    name = getattr(function, "__name__", None)
    qualname = getattr(function, "__qualname__", None)
    module = getattr(function, "__module__", None)
    if not isinstance(name, str) or not isinstance(qualname, str) or not module:
        raise PipelineDefinitionError(
            f"step {step!r}: processor {function!r} is not a function; pass a function "
            "defined with `def` at the top level of a module, or a 'package.module:function' "
            "string"
        )
    if name == "<lambda>":
        raise PipelineDefinitionError(
            f"step {step!r}: a lambda cannot be a processor (the worker imports the processor "
            "by name in the stage's pod); define it with `def` at the top level of a module"
        )
    if "<locals>" in qualname:
        raise PipelineDefinitionError(
            f"step {step!r}: {qualname} is defined inside another function (a closure), which "
            "the worker cannot import; move it to the top level of a module and pass what it "
            "needs as params or upstream outputs"
        )
    if "." in qualname:
        raise PipelineDefinitionError(
            f"step {step!r}: {qualname} is a method or a nested function; the worker imports "
            "'module:function', so make it a function at the top level of a module"
        )
    if module == "__main__":
        raise PipelineDefinitionError(
            f"step {step!r}: {name} is defined in __main__ (a script run directly, a notebook "
            "or an interactive session), which the stage's pod cannot import; move it into an "
            "importable module (e.g. my_pipeline/steps.py, installed in the stage image) and "
            "import it from there"
        )
    return f"{module}:{name}"


def upstream_parameters(function: Callable[..., Any], *, step: str) -> dict[str, str]:
    """{parameter: upstream stage} for the parameters after the first (the context).

    A parameter takes the outputs of the stage of the same name, with '_' for '-' (stage names
    are DNS labels, parameter names identifiers): `extract_text` reads stage `extract-text`.
    """
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError) as error:
        raise PipelineDefinitionError(
            f"step {step!r}: cannot read the signature of {function!r}: {error}"
        ) from error
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
    ):
        raise PipelineDefinitionError(
            f"step {step!r}: the processor must take the stage's context as its first "
            "positional parameter, e.g. `def transform(ctx: Context, extract: dict) -> dict`"
        )
    inputs: dict[str, str] = {}
    for parameter in parameters[1:]:
        if parameter.kind not in _PASSABLE:
            raise PipelineDefinitionError(
                f"step {step!r}: parameter {parameter.name!r} cannot receive an upstream "
                "stage's outputs; after the context, name each upstream stage as a parameter "
                "(no *args, **kwargs or positional-only parameters)"
            )
        inputs[parameter.name] = parameter.name.replace("_", "-")
    return inputs


def mark_inputs(function: Callable[..., Any], inputs: Mapping[str, str]) -> None:
    """Tell the worker which outputs to pass (see `contract.PROCESSOR_INPUTS_ATTRIBUTE`)."""
    if inputs:
        setattr(function, contract.PROCESSOR_INPUTS_ATTRIBUTE, dict(inputs))

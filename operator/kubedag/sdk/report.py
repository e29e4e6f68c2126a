"""The result of `Pipeline.validate()`: every problem, with the field path and the step it is in."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubedag.sdk.errors import PipelineDefinitionError

if TYPE_CHECKING:
    from kubedag.core.dag import FieldError

_STEP_PATH = re.compile(r"^(?P<prefix>(?:[\w.]*\.)?(?P<group>stages|finally)\[(?P<index>\d+)\])")


@dataclass(frozen=True)
class Report:
    """Problems found offline by the operator's own checks (`kubedag.core.validation`).

    `errors` are empty for a pipeline the operator would run; `step_names` maps the path of a
    stage ("spec.stages[2]") to its name, so that messages say which step is meant.
    """

    pipeline: str
    errors: list[FieldError] = field(default_factory=list)
    step_names: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def __bool__(self) -> bool:
        """True when the pipeline is valid, so `if p.validate():` reads naturally."""
        return self.ok

    def lines(self) -> list[str]:
        """One line per problem: `path (step 'name'): message`."""
        return [describe(error, self.step_names) for error in self.errors]

    def __str__(self) -> str:
        if self.ok:
            return f"pipeline {self.pipeline!r} is valid"
        problems = "\n".join(f"  {line}" for line in self.lines())
        return f"pipeline {self.pipeline!r} has {len(self.errors)} problem(s):\n{problems}"

    def raise_for_errors(self) -> None:
        """Raise PipelineDefinitionError listing every problem, if there is any."""
        if self.errors:
            raise PipelineDefinitionError(str(self), self.errors)


def step_names_by_path(raw_spec: Mapping[str, Any], path: str = "spec") -> dict[str, str]:
    """{"spec.stages[0]": "extract", ...} for the stages of a camelCase spec that have a name."""
    names: dict[str, str] = {}
    for group in ("stages", "finally"):
        stages = raw_spec.get(group)
        if not isinstance(stages, Sequence):
            continue
        for index, stage in enumerate(stages):
            name = stage.get("name") if isinstance(stage, Mapping) else None
            if isinstance(name, str):
                names[f"{path}.{group}[{index}]"] = name
    return names


def describe(error: FieldError, step_names: Mapping[str, str]) -> str:
    """`spec.stages[2].retry.limit (step 'train'): Input should be ...`."""
    match = _STEP_PATH.match(error.path)
    step = step_names.get(match.group("prefix")) if match else None
    where = f"{error.path} (step {step!r})" if step else error.path
    return f"{where}: {error.message}"

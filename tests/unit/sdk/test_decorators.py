"""`@p.task`: module-level functions become processor stages; everything the worker cannot
import is refused with what to do; the decorated function keeps its type for mypy --strict."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from examples.sdk import etl
from mypy import api as mypy_api

from kubedag import contract
from kubedag.sdk import Pipeline, PipelineDefinitionError

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "sdk"


def module_level(ctx: Any, extract_text: dict[str, Any]) -> dict[str, Any]:
    return {"n": len(extract_text)}


class Holder:
    def method(self, ctx: Any) -> None: ...


def test_decorated_functions_become_processor_stages_with_their_inputs() -> None:
    spec = etl.pipeline.build()
    assert [(s.name, s.processor, s.depends_on) for s in spec.stages] == [
        ("extract", "examples.sdk.etl:extract", None),
        ("transform", "examples.sdk.etl:transform", ["extract"]),
        ("load-totals", "examples.sdk.etl:load_totals", ["extract", "transform"]),
    ]
    assert getattr(etl.load_totals, contract.PROCESSOR_INPUTS_ATTRIBUTE) == {
        "extract": "extract", "transform": "transform"}
    assert not hasattr(etl.extract, contract.PROCESSOR_INPUTS_ATTRIBUTE)
    assert spec.stages[1].retry is not None and spec.stages[1].retry.limit == 2


def test_the_function_is_returned_unchanged_and_parameters_map_to_stage_names() -> None:
    p = Pipeline("t")
    p.add_step("extract-text", image="x")
    decorated = p.task(depends_on=["extract-text"], estimated_seconds=3)(module_level)
    assert decorated is module_level
    stage = p.build().stages[1]
    assert (stage.name, stage.depends_on) == ("module-level", ["extract-text"])
    assert getattr(module_level, contract.PROCESSOR_INPUTS_ATTRIBUTE) == {
        "extract_text": "extract-text"}


def test_bare_decorator_and_a_callable_processor() -> None:
    p = Pipeline("bare")
    p.add_step("extract-text", image="x")
    assert p.task(module_level) is module_level
    p.add_step("again", processor=module_level)
    assert [s.processor for s in p.build().stages[1:]] == [
        f"{__name__}:module_level", f"{__name__}:module_level"]
    assert p.build().stages[2].depends_on == ["extract-text"]


def _closure() -> Any:
    def inner(ctx: Any) -> None: ...
    return inner


def _in_main() -> Any:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("def cell(ctx):\n    return {}\n", namespace)
    return namespace["cell"]


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (lambda ctx: {}, r"a lambda cannot be a processor .* define it with `def` at the top"),
        (_closure(), r"defined inside another function \(a closure\).* move it to the top level"),
        (_in_main(), r"defined in __main__ \(a script run directly, a notebook or an interactive "
                     r"session\).*move it into an importable module"),
        (Holder().method, r"is a method .* make it a function at the top level"),
        (print, r"context as its first positional parameter"),
    ],
    ids=["lambda", "closure", "main", "method", "no-context"],
)
def test_what_the_worker_cannot_import_is_refused(function: Any, message: str) -> None:
    p = Pipeline("refuse")
    with pytest.raises(PipelineDefinitionError, match=message):
        p.task("s")(function)
    assert p.steps == []


def test_args_and_kwargs_cannot_receive_outputs() -> None:
    p = Pipeline("star")
    namespace: dict[str, Any] = {"__name__": "somewhere"}
    exec("def f(ctx, *rest):\n    return {}\n", namespace)
    with pytest.raises(PipelineDefinitionError, match=r"parameter 'rest' cannot receive"):
        p.task()(namespace["f"])


USER_FILE = """
from __future__ import annotations

from typing import Any

from kubedag.sdk import Pipeline
from kubedag.worker import Context

p = Pipeline("typed", image="img", params={"n": 1})


@p.task(retry=1)
def first(ctx: Context) -> dict[str, Any]:
    return {"n": ctx.params["n"]}


@p.task
def second(ctx: Context, first: dict[str, Any]) -> dict[str, int]:
    return {"double": 2 * int(first["n"])}


step = p.add_step("shell", command=["echo"], depends_on=["second"], timeout=5.5)
step.after("first")
spec = p.build()
names: list[str] = [s.name for s in spec.stages]
reveal_type(second)
"""


def _mypy(*files: Path) -> tuple[str, int]:
    out, err, status = mypy_api.run(["--strict", "--no-incremental", *map(str, files)])
    return out + err, status


def test_examples_and_user_code_pass_mypy_strict_without_ignores(tmp_path: Path) -> None:
    user = tmp_path / "user_pipeline.py"
    user.write_text(textwrap.dedent(USER_FILE))
    examples = sorted(EXAMPLES.glob("*.py"))
    for path in [*examples, user]:
        assert "type: ignore" not in path.read_text(), path
    output, status = _mypy(*examples, user)
    assert status == 0, output
    # The decorator gives the function back with its own signature, not Any.
    assert ('Revealed type is "def (ctx: kubedag.worker.context.Context, first: '
            'dict[str, Any]) -> dict[str, int]"' in output), output


def test_mypy_still_catches_a_wrong_call_of_a_decorated_function(tmp_path: Path) -> None:
    user = tmp_path / "wrong_call.py"
    user.write_text(textwrap.dedent(USER_FILE).replace(
        "reveal_type(second)", "second(None, 'not a dict')"))
    output, status = _mypy(user)
    assert status == 1
    assert 'Argument 2 to "second" has incompatible type "str"' in output, output

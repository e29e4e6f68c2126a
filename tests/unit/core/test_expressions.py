"""CEL `when` expressions: compile once, evaluate with clear errors, know what they read."""

from __future__ import annotations

import pytest

from kubedag.core.expressions import (
    ExpressionError,
    References,
    StageStatus,
    compile_expression,
    evaluate_when,
    render_value,
    substitution_references,
)

OUTPUTS = {"extract": {"scanned_pages": 3, "pages": 10}, "my-stage": {"ok": True}}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("stages.extract.outputs.scanned_pages > 0", True),
        ("stages.extract.outputs.scanned_pages > 0 && params.translate", False),
        ('stages["my-stage"].outputs.ok', True),
        ("has(stages.extract.outputs.language)", False),
        ("params.language in ['de', 'fr']", True),
        ("size(params.files) == 2", True),
    ],
)
def test_evaluate(source: str, expected: bool) -> None:
    params = {"translate": False, "language": "de", "files": ["a", "b"]}
    assert evaluate_when(source, params, OUTPUTS) is expected


def test_syntax_error_names_the_expression() -> None:
    with pytest.raises(ExpressionError, match=r"invalid CEL expression `params.x >`"):
        compile_expression("params.x >")


def test_empty_expression_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="empty"):
        compile_expression("  ")


def test_missing_output_is_a_clear_error() -> None:
    with pytest.raises(ExpressionError, match=r"cannot evaluate .*no such key: 'nope'"):
        evaluate_when("stages.extract.outputs.nope > 1", {}, OUTPUTS)


def test_non_bool_result_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="must be true or false, but gave int 11"):
        evaluate_when("stages.extract.outputs.pages + 1", {}, OUTPUTS)


def test_references() -> None:
    compiled = compile_expression(
        'params.a && stages.extract.outputs.pages > 0 && stages["my-stage"].outputs.ok '
        "&& size(stages.other.outputs) > 0"
    )
    assert compiled.references == References(
        params=frozenset({"a"}),
        outputs=frozenset({("extract", "pages"), ("my-stage", "ok"), ("other", None)}),
    )
    assert compiled.references.stages == {"extract", "my-stage", "other"}


def test_phase_and_reason_are_read_apart_from_outputs() -> None:
    compiled = compile_expression(
        "stages.train.phase == 'Failed' || stages[\"my-stage\"].reason == 'WhenFalse' "
        "|| stages.extract.outputs.pages > 0"
    )
    assert compiled.references == References(
        outputs=frozenset({("extract", "pages")}),
        statuses=frozenset({"train", "my-stage"}),
    )
    # Reading only a stage's phase is not reading its outputs.
    assert compiled.references.stages == {"extract"}


def test_unknown_stage_fields_are_collected() -> None:
    references = compile_expression("stages.a.foo == 1 && stages.b.phase == 'x'").references
    assert references.unknown_fields == {("a", "foo")}
    assert references.statuses == {"b"} and references.outputs == frozenset()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("stages.train.phase == 'Failed'", True),
        ("stages.train.phase == 'Succeeded'", False),
        ("stages.train.reason == 'ExitCode'", True),
        ("stages.skipped.phase == 'Skipped' && stages.skipped.reason == ''", True),
        # A failed stage has no outputs, so `has` is the way to ask about one.
        ("!has(stages.train.outputs.loss)", True),
        ("stages.extract.phase == 'Succeeded' && stages.extract.outputs.pages == 10", True),
    ],
)
def test_evaluate_phase_and_reason(source: str, expected: bool) -> None:
    statuses = {
        "train": StageStatus("Failed", "ExitCode"),
        "skipped": StageStatus("Skipped"),
        "extract": StageStatus("Succeeded"),
    }
    assert evaluate_when(source, {}, OUTPUTS, statuses) is expected


def test_compilation_is_cached() -> None:
    assert compile_expression("params.a") is compile_expression("params.a")


def test_substitution_references() -> None:
    references, malformed = substitution_references(
        "--in $(params.files) --n $(stages.extract.outputs.pages) $(param.typo) $(HOME)"
    )
    assert references.params == {"files"}
    assert references.outputs == {("extract", "pages")}
    assert malformed == ["$(param.typo)", "$(HOME)"]


def test_render_value() -> None:
    assert render_value("text") == "text"
    assert render_value(["a", 1]) == '["a",1]'
    assert render_value(True) == "true"

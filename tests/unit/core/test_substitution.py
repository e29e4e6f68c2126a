"""`$(params.x)` and `$(stages.s.outputs.k)` substitution."""

from __future__ import annotations

from typing import Any

import pytest

from kubedag.core.expressions import substitution_references
from kubedag.core.substitution import SubstitutionError, substitute

PARAMS: dict[str, Any] = {"name": "docs", "n": 3, "ratio": 0.5, "on": True, "tags": ["a", "b"],
                          "cfg": {"k": "v"}, "empty": "", "nothing": None}
OUTPUTS: dict[str, dict[str, Any] | None] = {
    "extract": {"file": "s3://b/k", "pages": 12, "meta": {"lang": "en"}},
    "quiet": None,
    "my-stage": {"x_1": "ok"},
}


@pytest.mark.parametrize(("text", "expected"), [
    ("plain", "plain"),
    ("", ""),
    ("$(params.name)", "docs"),
    ("--n=$(params.n)", "--n=3"),
    ("$(params.ratio)", "0.5"),
    ("$(params.on)", "true"),  # JSON, not Python's True
    ("$(params.tags)", '["a","b"]'),
    ("$(params.cfg)", '{"k":"v"}'),
    ("[$(params.empty)]", "[]"),
    ("$(params.nothing)", "null"),
    ("$(stages.extract.outputs.file)", "s3://b/k"),
    ("$(stages.extract.outputs.pages) pages", "12 pages"),
    ("$(stages.extract.outputs.meta)", '{"lang":"en"}'),
    ("$(stages.my-stage.outputs.x_1)", "ok"),
    ("$(params.name)/$(params.n)/$(stages.extract.outputs.pages)", "docs/3/12"),
    # Not references: left as they are.
    ("$(param.name)", "$(param.name)"),
    ("$(params.)", "$(params.)"),
    ("$params.name", "$params.name"),
    ("$(stages.extract.file)", "$(stages.extract.file)"),
    ("$$(params.n)", "$$(params.n)"),  # escaped, as in Kubernetes: the kubelet makes it $(
])
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, PARAMS, OUTPUTS) == expected


def test_substituted_values_are_not_substituted_again() -> None:
    assert substitute("$(params.x)", {"x": "$(params.y)", "y": "no"}, {}) == "$(params.y)"


@pytest.mark.parametrize(("text", "fragment"), [
    ("$(params.missing)", "unknown param 'missing'"),
    ("$(stages.extract.outputs.missing)", "stage 'extract' has no output 'missing'"),
    ("$(stages.quiet.outputs.x)", "stage 'quiet' has no output 'x'"),
    ("$(stages.nowhere.outputs.x)", "stage 'nowhere' has no output 'x'"),
    ("ok $(params.n) then $(params.typo)", "unknown param 'typo'"),
])
def test_unknown_references_raise(text: str, fragment: str) -> None:
    with pytest.raises(SubstitutionError, match=fragment) as raised:
        substitute(text, PARAMS, OUTPUTS)
    assert isinstance(raised.value, ValueError)  # what build_job's callers catch


def test_what_validation_accepts_is_what_gets_substituted() -> None:
    """Validation reads `$( params.lang )` (spaces inside) as a reference, so substitution
    must too; malformed forms are left for validation to report."""
    text = "--lang=$( params.lang ) --keep=$(param.typo)"
    references, malformed = substitution_references(text)
    assert references.params == {"lang"} and malformed == ["$(param.typo)"]
    assert substitute(text, {"lang": "de"}, {}) == "--lang=de --keep=$(param.typo)"


def test_double_dollar_escapes_a_shell_substitution() -> None:
    """`$$(` is left for the kubelet, which turns it into `$(` (Kubernetes' own escape): a
    shell's `$(cmd)` and `$((n + 1))` pass validation and reach the container intact."""
    text = "test $$(ls /workspace | wc -l) = $$((N + 1)) && echo $(params.n)"
    references, malformed = substitution_references(text)
    assert references.params == {"n"} and malformed == []
    assert substitute(text, {"n": 3}, {}) == (
        "test $$(ls /workspace | wc -l) = $$((N + 1)) && echo 3")

"""merge_patch(old, new): the RFC 7386 JSON merge patch that turns old into new."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubedag.core.mergepatch import merge_patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, verbatim: what the API server does with the patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


@pytest.mark.parametrize(("old", "new", "patch"), [
    ({}, {}, {}),
    ({"a": 1}, {"a": 1}, {}),  # no-op
    ({"a": 1}, {"a": 2}, {"a": 2}),
    ({}, {"a": 1}, {"a": 1}),
    ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),  # removed -> null
    ({"a": {"x": 1, "y": 2}}, {"a": {"x": 1, "y": 3}}, {"a": {"y": 3}}),  # nested diff
    ({"a": {"x": 1, "y": 2}}, {"a": {"x": 1}}, {"a": {"y": None}}),
    ({"a": {"x": {"deep": 1}}}, {"a": {"x": {"deep": 1}}}, {}),
    ({"a": [1, 2, 3]}, {"a": [1, 2]}, {"a": [1, 2]}),  # lists replaced whole
    ({"a": [{"k": 1}]}, {"a": [{"k": 1}]}, {}),
    ({"a": 1}, {"a": {"x": 1}}, {"a": {"x": 1}}),  # scalar -> object
    ({"a": {"x": 1}}, {"a": 1}, {"a": 1}),  # object -> scalar
    ({"a": {"x": 1}}, {"a": {}}, {"a": {"x": None}}),
    ({"a": 1}, {"a": 1.0}, {}),  # equal in JSON
    ({"stages": {"s1": {"phase": "Running", "job": "j"}}},
     {"stages": {"s1": {"phase": "Succeeded", "job": "j", "outputs": {"n": 1}}}},
     {"stages": {"s1": {"phase": "Succeeded", "outputs": {"n": 1}}}}),
])
def test_merge_patch(old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]) -> None:
    before = copy.deepcopy(old), copy.deepcopy(new)
    assert merge_patch(old, new) == patch
    assert apply_merge_patch(old, patch) == new
    assert (old, new) == before  # inputs untouched


def test_a_key_newly_set_to_a_value_equal_to_the_missing_default_is_sent() -> None:
    assert merge_patch({}, {"a": False}) == {"a": False}
    assert merge_patch({}, {"a": {}}) == {"a": {}}


JSON_SCALARS = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=3))
# Status documents never hold null (to_k8s drops unset fields), so neither do these.
JSON_DOCS = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.sampled_from("abcd"), children, max_size=4)),
    max_leaves=12,
)
OBJECTS = st.dictionaries(st.sampled_from("abcde"), JSON_DOCS, max_size=5)


@given(OBJECTS, OBJECTS)
def test_applying_the_patch_gives_the_new_document(old: dict[str, Any],
                                                   new: dict[str, Any]) -> None:
    patch = merge_patch(old, new)
    assert apply_merge_patch(old, patch) == new
    assert (patch == {}) == (old == new)


@given(OBJECTS)
def test_no_change_is_an_empty_patch(doc: dict[str, Any]) -> None:
    assert merge_patch(doc, copy.deepcopy(doc)) == {}

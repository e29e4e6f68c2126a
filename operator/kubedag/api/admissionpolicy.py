"""A CRD subtree's CEL rules, moved into a ValidatingAdmissionPolicy that checks them at apply time.

Why: the API server validates the *whole* custom object, CEL rules of the spec included, on every
write of its `status` subresource too (1.36 has no skip for an unchanged subtree; ratcheting only
forgives errors, it still evaluates), and each field a rule reads makes it copy every property of
the schema around it. A PipelineRun's status is written once or twice a stage, its inline
pipeline never: those rules cost the API server 8-9 of 28-33 ms a status write on a 20-stage run
and 0.37 of 0.7 s on a 900-stage one, the bulk of what kubedag costs it beyond its Jobs.

An admission policy bound to `pipelineruns` (not `pipelineruns/status`) runs the same rules when a
user creates the run or changes its pipeline, and never on the operator's status writes. The rules
stay written once, on the pydantic models next to the Python checks (`cel_rule`); this module
rewrites each from its place in the schema (`self`) into an expression over the whole `object`,
and its message into one that names the field the way the CRD's own error did
(`spec.pipelineSpec.stages[2]: stage train: a stage with a command needs an image`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubedag.api._base import EXCUSED_WHEN

RULES = "x-kubernetes-validations"


@dataclass(frozen=True)
class Step:
    """One step from the subtree's root down to where a rule sits: a named field (optional unless
    its parent requires it), or every item of a list."""

    field: str | None = None
    required: bool = False

    @property
    def is_each_item(self) -> bool:
        return self.field is None


EACH_ITEM = Step()


@dataclass(frozen=True)
class PlacedRule:
    """A CRD rule and where it sat: `self` is the node at the end of `steps`."""

    steps: tuple[Step, ...]
    rule: str
    message: str
    message_expression: str | None
    field_path: str | None


def take_rules(schema: dict[str, Any]) -> list[PlacedRule]:
    """Remove every CEL rule from ``schema`` (in place) and return them with their places."""
    placed: list[PlacedRule] = []
    _take(schema, (), placed)
    return placed


def _take(node: dict[str, Any], steps: tuple[Step, ...], placed: list[PlacedRule]) -> None:
    for entry in node.pop(RULES, ()):
        rule: str = entry["rule"]
        if excuse := entry.get(EXCUSED_WHEN):
            # What the excuse lets through, the schema refuses before admission runs.
            rule = rule.removesuffix(f" || {excuse}")
        placed.append(PlacedRule(steps, rule, entry["message"],
                                 entry.get("messageExpression"), entry.get("fieldPath")))
    required = set(node.get("required", ()))
    for name, child in node.get("properties", {}).items():
        _take(child, (*steps, Step(name, name in required)), placed)
    if isinstance(node.get("items"), dict):
        _take(node["items"], (*steps, EACH_ITEM), placed)
    values = node.get("additionalProperties")
    if isinstance(values, dict) and _has_rules(values):
        raise NotImplementedError("a CEL rule under a map's values cannot move to the policy yet")


def _has_rules(node: Any) -> bool:
    if isinstance(node, Mapping):
        return RULES in node or any(_has_rules(value) for value in node.values())
    if isinstance(node, list):
        return any(_has_rules(value) for value in node)
    return False


def holds(context: str, steps: Sequence[Step], rule: str) -> str:
    """CEL that is true when ``rule`` holds at every node ``steps`` reach from ``context``.

    Each list is walked with `all(self, ...)`: the comprehension binds the item to `self`, so the
    rule's own text is used as written. An absent optional field holds trivially, as in the CRD.
    """
    if not steps:
        return rule if context == "self" else f"[{context}].all(self, {rule})"
    step, rest = steps[0], steps[1:]
    if step.is_each_item:
        return f"{context}.all(self, {holds('self', rest, rule)})"
    inner = holds(f"{context}.{step.field}", rest, rule)
    return inner if step.required else f"(!has({context}.{step.field}) || {inner})"


def names_the_failure(context: str, path: Sequence[str | Cel], steps: Sequence[Step],
                      placed: PlacedRule, depth: int = 0) -> str:
    """CEL giving "<field path>: <message>" for the first node where the rule fails.

    Only evaluated once `holds` said no, so every field on the way is present. ``path`` is what
    leads there so far: literal text, and `Cel` for the indices found. A list's first failing
    index is bound with `[index].map(i, ...)` and its item with `[item].map(self, ...)`: CEL has
    no `let`, and a one-element list binds a name without evaluating anything twice.
    """
    if not steps:
        message = (Cel(f"({placed.message_expression})") if placed.message_expression
                   else placed.message)
        located = _joined([*path, placed.field_path or "", ": ", message])
        reads_self = isinstance(message, Cel) and context != "self"
        return f"[{context}].map(self, {located})[0]" if reads_self else located
    step, rest = steps[0], steps[1:]
    if step.is_each_item:
        index = f"i{depth}"
        first = (f"{context}.transformList({index}, self, "
                 f"!({holds('self', rest, placed.rule)}), {index})[0]")
        inner = names_the_failure("self", [*path, "[", Cel(f"string({index})"), "]"], rest,
                                  placed, depth + 1)
        return f"[{first}].map({index}, [{context}[{index}]].map(self, {inner})[0])[0]"
    return names_the_failure(f"{context}.{step.field}", [*path, f".{step.field}"], rest, placed,
                             depth)


class Cel(str):
    """A piece of a message that is a CEL expression, not literal text."""


def _joined(parts: Sequence[str | Cel]) -> str:
    """One CEL string expression of ``parts``, adjacent literal text merged into one literal."""
    pieces: list[str] = []
    text = ""
    for part in parts:
        if isinstance(part, Cel):
            if text:
                pieces.append(_quoted(text))
                text = ""
            pieces.append(part)
        else:
            text += part
    if text:
        pieces.append(_quoted(text))
    return " + ".join(pieces)


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def validations(root: str, field_path: str,
                rules: Sequence[PlacedRule]) -> Iterator[dict[str, Any]]:
    """The policy's `validations`: one per placed rule, checked on ``root`` (CEL over `object`)
    and reported under ``field_path`` (how kubectl's users write it: `spec.pipelineSpec`)."""
    for placed in rules:
        yield {
            "expression": holds(root, placed.steps, placed.rule),
            "messageExpression": names_the_failure(root, [field_path], placed.steps, placed),
            "message": f"{field_path}: {placed.message}",
            "reason": "Invalid",
        }


def policy_and_binding(*, name: str, group: str, plural: str, field: Sequence[str],
                       rules: Sequence[PlacedRule]) -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy checking ``rules`` of the optional field at ``field`` (a path
    from the object's root) when ``plural`` is created or that field changes, and its binding.

    Only when it changes: like the CRD's ratcheting, a label or `spec.suspend` patched onto a run
    created before a rule existed is not refused for the pipeline it already had. The status
    subresource is not matched, which is the point.
    """
    root = ".".join(("object", *field))
    old = ".".join(("oldObject", *field))
    parent, leaf = ".".join(("object", *field[:-1])), field[-1]
    old_parent = ".".join(("oldObject", *field[:-1]))
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [{
                    "apiGroups": [group],
                    "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": [plural],
                }],
            },
            "matchConditions": [{
                "name": f"{leaf}-is-new",
                "expression": (f"has({parent}.{leaf}) && (oldObject == null"
                               f" || !has({old_parent}.{leaf}) || {root} != {old})"),
            }],
            "validations": list(validations(root, ".".join(field), rules)),
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [policy, binding]

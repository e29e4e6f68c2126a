"""CEL `when` conditions and `$(...)` references: compiled once, checked, evaluated.

A `when` expression sees two variables: `params` (the run's resolved parameters) and `stages`
(`stages.<name>.outputs.<key>` of finished upstream stages, and their `stages.<name>.phase` and
`stages.<name>.reason`, so a clean-up branch can be written as `stages.train.phase == 'Failed'`).
Stage names may contain '-', which CEL would read as subtraction, so such a stage is written
`stages["my-stage"].outputs.k`.

Compiling at validation time turns a typo into an error on the Pipeline, not a failure halfway
through a run; the references found while compiling let the validator check that an
expression only reads stages that are guaranteed to have finished before it is evaluated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

PARAMS_VARIABLE = "params"
STAGES_VARIABLE = "stages"
OUTPUTS_FIELD = "outputs"
# What a `when` may read of a stage besides its outputs: how it ended, whatever the outcome.
STATUS_FIELDS = frozenset({"phase", "reason"})


class ExpressionError(ValueError):
    """A `when` expression does not compile, cannot be evaluated, or is not a bool."""


@dataclass(frozen=True)
class References:
    """What an expression or text reads: parameter names and (stage, output key) pairs.

    An output key is None when the expression reads a stage's outputs as a whole (or through a
    computed key), which the validator can still check at stage level. `statuses` are the
    stages whose `phase` or `reason` is read: such a stage is waited for whatever its outcome.
    `unknown_fields` are (stage, field) pairs that are none of outputs, phase or reason, kept
    so the validator can name the typo instead of the run failing when it evaluates.
    """

    params: frozenset[str] = frozenset()
    outputs: frozenset[tuple[str, str | None]] = frozenset()
    statuses: frozenset[str] = frozenset()
    unknown_fields: frozenset[tuple[str, str]] = frozenset()

    @property
    def stages(self) -> frozenset[str]:
        """Names of the stages whose outputs are referenced."""
        return frozenset(stage for stage, _ in self.outputs)


@dataclass(frozen=True)
class StageStatus:
    """How a finished stage ended, as a `when` reads it: `stages.<name>.phase` and `.reason`.

    Plain strings, not kubedag.api's StagePhase, so expressions stay independent of the API
    models (the caller passes `checkpoint.phase.value`).
    """

    phase: str
    reason: str | None = None


@dataclass(frozen=True)
class CompiledExpression:
    """A parsed `when` expression, ready to evaluate many times."""

    source: str
    references: References
    _program: Any

    def evaluate(
        self,
        params: Mapping[str, Any],
        outputs: Mapping[str, Mapping[str, Any] | None],
        statuses: Mapping[str, StageStatus] | None = None,
    ) -> bool:
        """Evaluate against the run's params, upstream outputs (stage name → outputs) and how
        finished stages ended (stage name → phase and reason).

        A stage in `statuses` but not in `outputs` (it failed or was skipped) reads as having
        no outputs; a missing reason reads as "" so `reason == '...'` needs no null check.
        Raises ExpressionError with the expression in the message for a missing key, a type
        mismatch or a non-bool result, so the stage can be failed with a readable reason.
        """
        statuses = statuses or {}
        stages = {
            name: {
                OUTPUTS_FIELD: dict(outputs.get(name) or {}),
                **(
                    {"phase": statuses[name].phase, "reason": statuses[name].reason or ""}
                    if name in statuses
                    else {}
                ),
            }
            for name in {*outputs, *statuses}
        }
        activation = {
            PARAMS_VARIABLE: json_to_cel(dict(params)),
            STAGES_VARIABLE: json_to_cel(stages),
        }
        try:
            result = self._program.evaluate(activation)
        except CELEvalError as error:
            raise ExpressionError(
                f"cannot evaluate `{self.source}`: {_eval_message(error)}"
            ) from error
        if isinstance(result, CELEvalError):
            raise ExpressionError(f"cannot evaluate `{self.source}`: {_eval_message(result)}")
        if not isinstance(result, celtypes.BoolType):
            raise ExpressionError(
                f"`{self.source}` must be true or false, but gave "
                f"{type(result).__name__.removesuffix('Type').lower()} {result}"
            )
        return bool(result)


def _eval_message(error: CELEvalError) -> str:
    args = error.args
    text = str(args[0]) if args else str(error)
    return text.replace("no such member in mapping", "no such key")


@lru_cache(maxsize=1)
def _environment() -> Any:
    # Building the parser is the slow part; one environment serves every expression.
    return celpy.Environment()


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> CompiledExpression:
    """Parse a `when` expression; raise ExpressionError pointing at the syntax error.

    Cached: the operator re-checks the same expressions on every reconcile.
    """
    if not source.strip():
        raise ExpressionError("the expression is empty")
    environment = _environment()
    try:
        tree = environment.compile(source)
    except CELParseError as error:
        detail = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        raise ExpressionError(f"invalid CEL expression `{source}`: {detail}") from error
    program = environment.program(tree)
    return CompiledExpression(source=source, references=_references(tree), _program=program)


def evaluate_when(
    source: str,
    params: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any] | None],
    statuses: Mapping[str, StageStatus] | None = None,
) -> bool:
    """Compile (cached) and evaluate a `when` expression: the one-call form for the operator."""
    return compile_expression(source).evaluate(params, outputs, statuses)


# --- References in CEL ---------------------------------------------------------------------


def _references(tree: lark.Tree[Any]) -> References:
    """Collect `params.x`, `stages.s.outputs.k` (or `stages["s"]...`), `stages.s.phase` and
    `stages.s.reason` from the parse tree."""
    params: set[str] = set()
    fields: dict[str, set[str]] = {}  # stage → fields read of it (outputs, phase, ...)
    output_keys: dict[str, set[str]] = {}  # stage → output keys read by name
    for node in tree.iter_subtrees():
        if node.data not in ("member_dot", "member_index"):
            continue
        chain = _member_chain(node)
        if len(chain) < 2 or chain[1] is None:
            continue
        root, name = chain[0], chain[1]
        if root == PARAMS_VARIABLE:
            params.add(name)
        elif root == STAGES_VARIABLE:
            # Sub-chains of `stages.s.outputs.k` are visited too; each adds what it knows.
            stage_fields = fields.setdefault(name, set())
            if len(chain) >= 3 and chain[2] is not None:
                stage_fields.add(chain[2])
            if len(chain) >= 4 and chain[2] == OUTPUTS_FIELD and chain[3] is not None:
                output_keys.setdefault(name, set()).add(chain[3])
    outputs: set[tuple[str, str | None]] = set()
    statuses: set[str] = set()
    unknown: set[tuple[str, str]] = set()
    for stage, read in fields.items():
        if not read or OUTPUTS_FIELD in read:
            # The stage as a whole, or its outputs: by key where the keys are named.
            keys = output_keys.get(stage)
            outputs |= {(stage, key) for key in keys} if keys else {(stage, None)}
        if read & STATUS_FIELDS:
            statuses.add(stage)
        unknown |= {(stage, field) for field in read - STATUS_FIELDS - {OUTPUTS_FIELD}}
    return References(
        frozenset(params), frozenset(outputs), frozenset(statuses), frozenset(unknown)
    )


def _member_chain(node: lark.Tree[Any]) -> list[str | None]:
    """`stages.a.outputs.k` → ["stages", "a", "outputs", "k"]; None for a computed selector."""
    if node.data == "member" and len(node.children) == 1:
        child = node.children[0]
        if isinstance(child, lark.Tree):
            return _member_chain(child)
    if node.data == "primary":
        root = _root_identifier(node)
        return [root] if root else []
    if node.data in ("member_dot", "member_index"):
        target, selector = node.children[0], node.children[1]
        inner = _member_chain(target) if isinstance(target, lark.Tree) else []
        return [*inner, _selector(node.data, selector)] if inner else []
    return []


def _root_identifier(node: Any) -> str | None:
    """The variable name when `node` is a bare identifier (possibly wrapped), else None."""
    while isinstance(node, lark.Tree):
        if node.data == "ident":
            token = node.children[0]
            return str(token)
        if len(node.children) != 1:
            return None
        node = node.children[0]
    return None


def _selector(kind: str, selector: Any) -> str | None:
    if kind == "member_dot":
        return str(selector)
    # member_index: only a literal string index names a key statically.
    node = selector
    while isinstance(node, lark.Tree) and len(node.children) == 1:
        node = node.children[0]
    if isinstance(node, lark.Token) and node.type == "STRING_LIT":
        text = str(node)
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            return text[1:-1]
    return None


# --- $(...) references in command, args, env -----------------------------------------------

# `$$(` is an escape, as in Kubernetes' own $(VAR) expansion of command, args and env: kubedag
# leaves it alone and the kubelet turns it into a literal `$(` (a shell's `$(cmd)` or `$((n+1))`).
SUBSTITUTION = re.compile(r"(?<!\$)\$\(([^)]*)\)")
_PARAM_REF = re.compile(r"^params\.([A-Za-z_][A-Za-z0-9_]*)$")
_OUTPUT_REF = re.compile(
    r"^stages\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.outputs\.([A-Za-z_][A-Za-z0-9_]*)$"
)


def parse_reference(inner: str) -> tuple[str, str, str | None] | None:
    """What a `$(...)` names: ("params", name, None), ("stages", stage, output key), or None.

    The one reading of the syntax, shared by validation and by the substitution that builds a
    Job, so that what validates is exactly what gets substituted.
    """
    inner = inner.strip()
    if param := _PARAM_REF.match(inner):
        return ("params", param.group(1), None)
    if output := _OUTPUT_REF.match(inner):
        return ("stages", output.group(1), output.group(3))
    return None


def substitution_references(text: str) -> tuple[References, list[str]]:
    """The `$(params.x)` and `$(stages.s.outputs.k)` references in a string.

    Also returns the `$(...)` forms that are neither, so the validator can report them instead
    of a stage receiving a literal "$(param.x)" typo.
    """
    params: set[str] = set()
    outputs: set[tuple[str, str | None]] = set()
    malformed: list[str] = []
    for match in SUBSTITUTION.finditer(text):
        reference = parse_reference(match.group(1))
        if reference is None:
            malformed.append(match.group(0))
        elif reference[0] == "params":
            params.add(reference[1])
        else:
            outputs.add((reference[1], reference[2]))
    return References(frozenset(params), frozenset(outputs)), malformed


def render_value(value: Any) -> str:
    """How a substituted value is written into a string: strings as is, everything else JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))

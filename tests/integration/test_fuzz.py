"""Fuzzing: hostile PipelineRuns are rejected by the API server, or fail cleanly in the operator.

Hypothesis builds 1,000 invalid or hostile specs from a valid base, each knowing where it must be
stopped:
- "reject": the CRD's schema or CEL rules refuse it (unknown or too many dependencies, bad
  quantities, over-long names, too many stages or fan-out items, duplicate names, wrong types).
  Checked with server-side dry-run creates, which run all of admission and validation.
- "fail": the API server admits it and the operator must end the run Failed with a message
  naming the problem (cycles, broken or dangling CEL, unknown references, huge outputs).
  Every one is dry-run admitted and checked against kubedag's own validation; a sample is
  created for real and reconciled.
Throughout, the operator must stay alive, log no Traceback, and still run a valid pipeline.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from kubedag.api import PipelineRunSpec
from kubedag.api._base import QUANTITY
from kubedag.core.decide import check_pipeline
from kubedag.core.validation import validate_pipeline
from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import (
    GROUP,
    RUNS,
    VERSION,
    condition,
    create_run,
    pipeline,
    stage,
    wait_phase,
)
from tests.integration.support import Cluster

EXAMPLES = 1000
RECONCILED = 50
NAME = st.from_regex(r"\A[a-z][a-z0-9]{0,7}\Z")
PLACEMENT: dict[str, Any] = {}  # filled from the cluster at test time


@dataclass
class Case:
    kind: str
    expect: str  # "reject" or "fail"
    spec: dict[str, Any]
    name: str = "fuzz"


def _base(stages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"pipelineSpec": {"stages": stages, "defaults": dict(PLACEMENT), **fields}}


def _chain(names: list[str]) -> list[dict[str, Any]]:
    return [stage(n, *([names[i - 1]] if i else [])) for i, n in enumerate(names)]


@st.composite
def names(draw: st.DrawFn, min_size: int = 1, max_size: int = 6) -> list[str]:
    return draw(st.lists(NAME, min_size=min_size, max_size=max_size, unique=True))


# --- rejected by the API server ----------------------------------------------------------------

@st.composite
def unknown_dependency(draw: st.DrawFn) -> Case:
    stage_names = draw(names())
    ghost = draw(NAME.filter(lambda n: n not in stage_names))
    stages = _chain(stage_names)
    victim = draw(st.sampled_from(stages))
    victim["dependsOn"] = [*victim.get("dependsOn", []), ghost]
    return Case("unknown-dependency", "reject", _base(stages))


@st.composite
def self_dependency(draw: st.DrawFn) -> Case:
    stages = _chain(draw(names()))
    victim = draw(st.sampled_from(stages))
    victim["dependsOn"] = [*victim.get("dependsOn", []), victim["name"]]
    return Case("self-dependency", "reject", _base(stages))


@st.composite
def bad_quantity(draw: st.DrawFn) -> Case:
    value = draw(st.text(min_size=0, max_size=20).filter(
        lambda s: re.fullmatch(QUANTITY, s) is None))
    field = draw(st.sampled_from(["cpu", "memory", "ephemeralStorage"]))
    stages = _chain(draw(names()))
    draw(st.sampled_from(stages))["resources"] = {field: value}
    return Case("bad-quantity", "reject", _base(stages))


@st.composite
def long_stage_name(draw: st.DrawFn) -> Case:
    length = draw(st.integers(64, 400))
    stages = _chain([*draw(names()), "x" * length])
    return Case("long-stage-name", "reject", _base(stages))


@st.composite
def bad_stage_name(draw: st.DrawFn) -> Case:
    bad = draw(st.text(min_size=1, max_size=40).filter(
        lambda s: re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", s) is None))
    return Case("bad-stage-name", "reject", _base([stage(bad)]))


@st.composite
def long_run_name(draw: st.DrawFn) -> Case:
    return Case("long-run-name", "reject", _base(_chain(draw(names()))),
                name="r" * draw(st.integers(254, 600)))


@st.composite
def too_many_stages(draw: st.DrawFn) -> Case:
    count = draw(st.integers(1001, 1300))
    return Case("too-many-stages", "reject",
                _base([{"name": f"s{i}", "image": "busybox"} for i in range(count)]))


@st.composite
def too_many_dependencies(draw: st.DrawFn) -> Case:
    width = draw(st.integers(65, 200))
    stages = [{"name": f"m{i}", "image": "busybox"} for i in range(width)]
    sink = {"name": "sink", "image": "busybox", "dependsOn": [f"m{i}" for i in range(width)]}
    stages.append(sink)
    return Case("too-many-dependencies", "reject", _base(stages))


@st.composite
def huge_fan_out(draw: st.DrawFn) -> Case:
    count = draw(st.integers(1001, 3000))
    return Case("huge-fan-out", "reject", _base(
        [stage("fan", fanOut={"items": list(range(count))})]))


@st.composite
def duplicate_names(draw: st.DrawFn) -> Case:
    stage_names = draw(names())
    return Case("duplicate-names", "reject",
                _base([*_chain(stage_names), stage(draw(st.sampled_from(stage_names)))]))


JSON_JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=10), st.lists(st.integers(), max_size=3))


@st.composite
def wrong_type(draw: st.DrawFn) -> Case:
    stages = _chain(draw(names()))
    target = draw(st.sampled_from(stages))
    field, valid = draw(st.sampled_from([
        ("dependsOn", list), ("retry", dict), ("timeoutSeconds", int), ("args", list),
        ("name", str), ("critical", bool), ("env", list), ("resources", dict)]))
    junk = draw(JSON_JUNK.filter(lambda v: not isinstance(v, valid) and v is not None))
    if valid is int and isinstance(junk, bool):
        junk = "many"
    target[field] = junk
    return Case("wrong-type", "reject", _base(stages))


@st.composite
def bad_numbers(draw: st.DrawFn) -> Case:
    stages = _chain(draw(names()))
    target = draw(st.sampled_from(stages))
    which = draw(st.sampled_from(["timeoutSeconds", "maxParallelStages", "gpu"]))
    value = draw(st.integers(max_value=0)) if which != "maxParallelStages" else draw(
        st.one_of(st.integers(max_value=0), st.integers(min_value=1001)))
    if which == "timeoutSeconds":
        target["timeoutSeconds"] = value
        return Case("bad-number", "reject", _base(stages))
    if which == "gpu":
        target["resources"] = {"gpu": value - 1}
        return Case("bad-number", "reject", _base(stages))
    return Case("bad-number", "reject", _base(stages, maxParallelStages=value))


@st.composite
def command_and_processor(draw: st.DrawFn) -> Case:
    return Case("command-and-processor", "reject", _base([
        {"name": draw(NAME), "image": "busybox", "command": ["sh"], "processor": "pkg.mod:run"}]))


# --- admitted, then failed by the operator ------------------------------------------------------

@st.composite
def cycle(draw: st.DrawFn) -> Case:
    ring = draw(names(min_size=2, max_size=8))
    extra = draw(st.lists(NAME.filter(lambda n: n not in ring), max_size=4, unique=True))
    stages = [stage(n, ring[i - 1]) for i, n in enumerate(ring)]  # ring[0] needs ring[-1]
    stages += [stage(n, draw(st.sampled_from(ring))) for n in extra]
    return Case("cycle", "fail", _base(stages))


@st.composite
def broken_when(draw: st.DrawFn) -> Case:
    stage_names = draw(names(min_size=2))
    stages = _chain(stage_names)
    junk = draw(st.text(alphabet="abc.()[]{}&|!<>=+-*/'\" 0123456789", max_size=40))
    expression = draw(st.sampled_from([
        f"({junk}", f"{junk} &&", f"stages.{stage_names[0]}.outputs.x > )",
        f"stages.nosuchstage.outputs.x > 0 {junk}".strip(),
        f"params.missing == 1 || ({junk}"]))
    stages[-1]["when"] = expression
    return Case("broken-when", "fail", _base(stages))


@st.composite
def dangling_reference(draw: st.DrawFn) -> Case:
    stages = _chain(draw(names()))
    target = draw(st.sampled_from(stages))
    ref = draw(st.sampled_from(["$(params.{})", "$(stages.{}.outputs.x)"])).format(
        draw(st.from_regex(r"\Azz[a-z]{1,6}\Z")))
    target["args"] = [ref]
    return Case("dangling-reference", "fail", _base(stages))


@st.composite
def fan_out_both_sources(draw: st.DrawFn) -> Case:
    return Case("fan-out-two-sources", "fail", _base(
        [stage(draw(NAME), fanOut={"items": [1, 2], "itemsFrom": "$(params.files)"})],
        params=[{"name": "files", "type": "array", "default": [1]}]))


@st.composite
def huge_outputs(draw: st.DrawFn) -> Case:
    size = draw(st.integers(5_000, 100_000))
    stages = _chain(draw(names()))
    stages[-1] = stage(stages[-1]["name"], *stages[-1].get("dependsOn", []),
                       outputs={"blob": "x" * size})
    return Case("huge-outputs", "fail", _base(stages))


HOSTILE = st.one_of(
    unknown_dependency(), self_dependency(), bad_quantity(), long_stage_name(),
    bad_stage_name(), long_run_name(), too_many_stages(), too_many_dependencies(),
    huge_fan_out(), duplicate_names(), wrong_type(), bad_numbers(), command_and_processor(),
    cycle(), broken_when(), dangling_reference(), fan_out_both_sources(), huge_outputs(),
)


def _operator_would_fail(case: Case) -> bool:
    """kubedag's own checks (the ones the operator runs) find a problem in an admitted spec."""
    if case.kind == "huge-outputs":
        return True  # valid; the stage's outputs are what fails it
    try:
        spec = PipelineRunSpec.model_validate(case.spec)
    except ValidationError:
        return True  # the operator fails the run with the validation message
    assert spec.pipeline_spec is not None
    return bool(check_pipeline(spec.pipeline_spec)
                or validate_pipeline(case.spec["pipelineSpec"], path="spec.pipelineSpec"))


def test_hostile_specs_are_rejected_or_fail_cleanly(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    PLACEMENT.update(nodeSelector=cluster.pod_placement()["nodeSelector"],
                     tolerations=cluster.pod_placement()["tolerations"])
    log_start = running_operator.log.stat().st_size
    admitted: list[Case] = []
    seen: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=HOSTILE)
    def check(case: Case) -> None:
        seen[case.kind] = seen.get(case.kind, 0) + 1
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PipelineRun",
                "metadata": {"name": case.name}, "spec": case.spec}
        try:
            cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, RUNS, body,
                                                           dry_run="All")
        except ApiException as error:
            assert error.status in (400, 422), (case.kind, error.status, error.body[:500])
            message = json.loads(error.body)["message"]
            assert case.expect == "reject", f"{case.kind} rejected: {message}"
            assert message and len(message) < 20_000
            return
        assert case.expect == "fail", f"{case.kind} admitted: {json.dumps(case.spec)[:600]}"
        assert _operator_would_fail(case), f"{case.kind}: {json.dumps(case.spec)[:600]}"
        admitted.append(case)

    # cel-python raises the recursion limit to 2500 whenever it builds an environment; start
    # there, so Hypothesis does not see the limit change under it.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 2500))
    try:
        check()
    finally:
        sys.setrecursionlimit(limit)
    assert sum(seen.values()) >= EXAMPLES, seen
    assert len(seen) == 18, seen

    # A sample of the admitted ones, reconciled for real: each ends Failed, saying why.
    by_kind: dict[str, list[Case]] = {}
    for case in admitted:
        by_kind.setdefault(case.kind, []).append(case)
    sample: list[Case] = []
    while len(sample) < RECONCILED and any(by_kind.values()):
        for cases in by_kind.values():
            if cases and len(sample) < RECONCILED:
                sample.append(cases.pop(0))
    print(f"examples by kind: {seen}; admitted {len(admitted)}, reconciling {len(sample)}")
    for i, case in enumerate(sample):
        create_run(cluster, namespace, f"fuzz-{i:03d}", case.spec)
    for i, case in enumerate(sample):
        run = wait_phase(cluster, namespace, f"fuzz-{i:03d}", timeout=60)
        assert run["status"]["phase"] == "Failed", (case.kind, run["status"])
        finished = condition(run, "Succeeded")
        assert finished is not None and finished["message"], (case.kind, run["status"])
        expected_reason = "StageFailed" if case.kind == "huge-outputs" else "InvalidPipeline"
        assert finished["reason"] == expected_reason, (case.kind, finished)
        if case.kind == "cycle":
            assert "cycle" in finished["message"], finished

    # The operator survived all of it and still serves.
    assert running_operator.process is not None and running_operator.process.poll() is None
    create_run(cluster, namespace, "after-fuzz",
               {"pipelineSpec": pipeline(cluster, [stage("a"), stage("b", "a")])})
    assert wait_phase(cluster, namespace, "after-fuzz")["status"]["phase"] == "Succeeded"
    with running_operator.log.open("rb") as log:
        log.seek(log_start)
        tail = log.read().decode(errors="replace")
    assert "Traceback" not in tail, tail[tail.find("Traceback") - 2000:][:6000]

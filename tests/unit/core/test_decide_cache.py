"""decide() with the stage cache: hits, misses and why, waiting for an identical stage, and
what is stored (no API server: the cache is a `CacheIndex` fed with the entries decide built)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kubedag.api import StagePhase
from kubedag.core import reasons
from kubedag.core.cache import CacheEntry, CacheIndex
from kubedag.core.decide import RunFacts, decide
from kubedag.core.plan import Plan
from tests.unit.core.factories import (
    IDENTITY,
    NAMESPACE,
    at,
    facts,
    phases,
    pipeline,
    pod,
    stage,
    started,
    step,
)

IMAGE_ID = "docker.io/library/busybox@sha256:" + "ab" * 32
CACHED = {"enabled": True}


def cached_pipeline(language: str = "en", **cache: Any) -> Any:
    return pipeline(
        stage("extract", args=["--language", "$(params.language)"],
              cache={**CACHED, **cache}),
        stage("report", "extract", args=["$(stages.extract.outputs.pages)"]),
        params=[{"name": "language", "default": language}])


def first_run(spec: Any, index: CacheIndex, *, run_spec: dict[str, Any] | None = None,
              outputs: dict[str, Any] | None = None, image_id: str | None = IMAGE_ID,
              phase: str = "Succeeded", now: float = 0) -> tuple[RunFacts, Plan]:
    """Start the run and let `extract` end; returns the facts and plan after that."""
    f = replace(facts(spec, run_spec=run_spec), cache=index)
    plan = decide(f, at(now))
    assert started(plan) == ["extract"]
    f = step(f, plan, now=at(now + 5), pods=[
        pod("extract", phase=phase, outputs=outputs or {"pages": 3}, image_id=image_id)])
    return f, decide(f, at(now + 5))


def fill(index: CacheIndex, plan: Plan) -> None:
    """What the shell does with a plan's entries: create them, and the watch indexes them."""
    for manifest in plan.cache_entries:
        index.add(CacheEntry.from_body(manifest))


def test_a_first_run_misses_without_a_digest_and_stores_its_result_under_the_pods_digest(
) -> None:
    index = CacheIndex()
    f = replace(facts(cached_pipeline()), cache=index)
    plan = decide(f, at(0))
    cache = plan.status.stages["extract"].cache  # type: ignore[index]
    assert cache is not None and cache.miss_reason == reasons.CACHE_NO_DIGEST
    assert plan.cache_lookups == [("extract", "miss", reasons.CACHE_NO_DIGEST)]
    f = step(f, plan, now=at(5), pods=[pod("extract", outputs={"pages": 3}, image_id=IMAGE_ID)])
    plan = decide(f, at(5))
    [entry] = plan.cache_entries
    spec = entry["spec"]
    assert spec["imageDigest"] == "sha256:" + "ab" * 32
    assert spec["outputs"] == {"pages": 3} and spec["sourceRun"] == "run"
    assert spec["components"]["params"] == {"language": "en"}
    assert entry["metadata"]["name"] == spec["key"]
    assert entry["metadata"]["labels"]["kubedag.io/cache-key"] == spec["key"][:63]
    assert plan.status.stages["extract"].cache.key == spec["key"]  # type: ignore[index,union-attr]
    assert "report" in started(plan)  # not cacheable: runs as always


def test_a_second_run_reuses_the_result_without_a_job_and_passes_its_outputs_on() -> None:
    index = CacheIndex()
    _, plan = first_run(cached_pipeline(), index, outputs={"pages": 7})
    fill(index, plan)
    f = replace(facts(cached_pipeline()), cache=index)
    plan = decide(f, at(60))
    assert "extract" not in started(plan)
    cp = plan.status.stages["extract"]  # type: ignore[index]
    assert (cp.phase, cp.reason, cp.outputs) == (StagePhase.SUCCEEDED, reasons.CACHED,
                                                 {"pages": 7})
    assert cp.cache is not None and cp.cache.hit and cp.cache.source_run == "run"
    assert "55s old" in (cp.message or "")
    assert plan.cache_lookups == [("extract", "hit", reasons.CACHED)]
    assert reasons.STAGE_CACHED in [e.reason for e in plan.events]
    assert plan.requeue_after == 0  # report is ready now
    plan = decide(step(f, plan, now=at(60)), at(60))
    [report] = plan.create_jobs
    assert report["spec"]["template"]["spec"]["containers"][0]["args"] == ["7"]


def test_a_param_change_misses_and_says_which_param_changed() -> None:
    index = CacheIndex()
    fill(index, first_run(cached_pipeline("en"), index)[1])
    plan = decide(replace(facts(cached_pipeline("de")), cache=index), at(60))
    assert started(plan) == ["extract"]
    cache = plan.status.stages["extract"].cache  # type: ignore[index]
    assert cache is not None and cache.miss_reason == reasons.CACHE_CHANGED
    assert "param 'language' changed: 'en' → 'de'" in (cache.explanation or "")
    assert "args changed" in (cache.explanation or "")


def test_an_ignored_param_does_not_change_the_key_unless_the_command_line_shows_it() -> None:
    index = CacheIndex()
    spec = pipeline(stage("extract", processor="pkg.mod:run", cache={"ignoreParams": ["debug"]}),
                    params=[{"name": "debug", "type": "bool", "default": False}])
    fill(index, first_run(spec, index)[1])
    other = pipeline(stage("extract", processor="pkg.mod:run", cache={"ignoreParams": ["debug"]}),
                     params=[{"name": "debug", "type": "bool", "default": True}])
    plan = decide(replace(facts(other), cache=index), at(60))
    assert phases(plan)["extract"] == StagePhase.SUCCEEDED


def test_an_entry_older_than_max_age_is_not_reused() -> None:
    index = CacheIndex()
    fill(index, first_run(cached_pipeline(maxAge="1m"), index)[1])
    plan = decide(replace(facts(cached_pipeline(maxAge="1m")), cache=index), at(120))
    assert started(plan) == ["extract"]
    cache = plan.status.stages["extract"].cache  # type: ignore[index]
    assert cache is not None and cache.miss_reason == reasons.CACHE_EXPIRED
    assert index.expired(at(120)) and not index.expired(at(30))


def test_a_failed_stage_is_never_stored() -> None:
    index = CacheIndex()
    _, plan = first_run(cached_pipeline(), index, phase="Failed")
    assert plan.cache_entries == []


def test_a_stage_waits_for_an_identical_stage_of_another_run_then_reuses_its_result() -> None:
    index = CacheIndex()
    spec = pipeline(stage("extract", image="busybox@sha256:" + "ab" * 32, cache={}))
    first = replace(facts(spec), cache=index)
    plan = decide(first, at(0))
    assert started(plan) == ["extract"] and len(plan.cache_fills) == 1
    index.note_fills(NAMESPACE, "run", plan.cache_fills)  # as the shell does after each pass
    second = replace(facts(spec, identity=replace(IDENTITY, name="run-b", uid="uid-b")),
                     cache=index)
    waiting = decide(second, at(1))
    cp = waiting.status.stages["extract"]  # type: ignore[index]
    assert started(waiting) == [] and cp.phase == StagePhase.PENDING and cp.job is None
    assert cp.reason == reasons.WAITING_FOR_CACHE
    assert (cp.message or "").startswith("waiting for run run, which is computing")
    assert waiting.requeue_after == 2
    first = step(first, plan, now=at(5), pods=[pod("extract", outputs={"n": 1}, image_id=IMAGE_ID)])
    plan = decide(first, at(5))
    index.note_fills(NAMESPACE, "run", plan.cache_fills)
    fill(index, plan)
    plan = decide(step(second, waiting, now=at(6)), at(6))
    cp = plan.status.stages["extract"]  # type: ignore[index]
    assert (cp.phase, cp.reason, cp.outputs) == (StagePhase.SUCCEEDED, reasons.CACHED, {"n": 1})


def test_a_running_cacheable_stage_reports_the_key_it_fills() -> None:
    index = CacheIndex()
    fill(index, first_run(cached_pipeline(), index)[1])
    plan = decide(replace(facts(cached_pipeline("de")), cache=index), at(60))
    key = plan.status.stages["extract"].cache.key  # type: ignore[index,union-attr]
    assert key and plan.cache_fills == frozenset({key})


def test_a_run_with_cache_disabled_neither_reads_nor_writes() -> None:
    index = CacheIndex()
    fill(index, first_run(cached_pipeline(), index)[1])
    _, plan = first_run(cached_pipeline(), index, run_spec={"cache": "Disabled"}, now=60)
    assert plan.cache_entries == []
    cache = plan.status.stages["extract"].cache  # type: ignore[index]
    assert cache is not None and cache.miss_reason == reasons.CACHE_DISABLED


def test_a_run_with_cache_overwrite_runs_the_stage_and_replaces_the_entry() -> None:
    index = CacheIndex()
    fill(index, first_run(cached_pipeline(), index)[1])
    _, plan = first_run(cached_pipeline(), index, run_spec={"cache": "Overwrite"},
                        outputs={"pages": 9}, now=60)
    [entry] = plan.cache_entries
    assert plan.overwrite_cache and entry["spec"]["outputs"] == {"pages": 9}


def test_a_stage_opted_out_of_the_pipeline_default_is_not_cached() -> None:
    spec = pipeline(stage("a"), stage("b", cache={"enabled": False}),
                    defaults={"cache": {"maxAge": "7d"}})
    plan = decide(replace(facts(spec), cache=CacheIndex()), at(0))
    stages = plan.status.stages or {}
    assert stages["a"].cache is not None and stages["b"].cache is None


def test_an_image_pinned_by_digest_is_looked_up_on_its_first_run() -> None:
    image = "busybox@sha256:" + "cd" * 32
    spec = pipeline(stage("a", image=image, cache={}))
    plan = decide(replace(facts(spec), cache=CacheIndex()), at(0))
    cache = plan.status.stages["a"].cache  # type: ignore[index]
    assert cache is not None and cache.miss_reason == reasons.CACHE_NO_ENTRY and cache.key


def test_a_fan_out_stage_is_cached_as_a_whole() -> None:
    index = CacheIndex()
    spec = pipeline(stage("split", fanOut={"items": [1, 2, 3]}, cache={}))
    f = replace(facts(spec), cache=index)
    plan = decide(f, at(0))
    f = step(f, plan, now=at(5), pods=[
        pod("split", index=i, outputs={"pages": i}, image_id=IMAGE_ID) for i in range(3)])
    fill(index, decide(f, at(5)))
    plan = decide(replace(facts(spec), cache=index), at(30))
    cp = plan.status.stages["split"]  # type: ignore[index]
    assert cp.reason == reasons.CACHED and cp.fan_out is not None and cp.fan_out.total == 3
    assert (cp.outputs or {})["pages"] == 3 and (cp.outputs or {})["count"] == 3


def test_an_unchanged_run_finishes_from_the_cache_alone() -> None:
    index = CacheIndex()
    spec = pipeline(stage("a", cache={}), stage("b", "a", cache={}))
    f = replace(facts(spec), cache=index)
    plan = decide(f, at(0))
    f = step(f, plan, now=at(5), pods=[pod("a", outputs={"n": 1}, image_id=IMAGE_ID)])
    plan = decide(f, at(5))
    fill(index, plan)
    f = step(f, plan, now=at(10), pods=[pod("b", outputs={"m": 2}, image_id=IMAGE_ID)])
    fill(index, decide(f, at(10)))
    f = replace(facts(spec), cache=index)
    plan = decide(f, at(30))
    plan = decide(step(f, plan, now=at(30)), at(30))
    assert plan.status.phase.finished and plan.create_jobs == []


def test_a_new_image_misses_for_want_of_a_digest_and_says_the_image_changed() -> None:
    index = CacheIndex()
    fill(index, first_run(cached_pipeline(), index)[1])
    spec = pipeline(stage("extract", image="busybox:1.37", args=["--language", "en"],
                          cache={}),
                    params=[{"name": "language", "default": "en"}])
    plan = decide(replace(facts(spec), cache=index), at(60))
    cache = plan.status.stages["extract"].cache  # type: ignore[index]
    assert cache is not None and cache.miss_reason == reasons.CACHE_NO_DIGEST
    assert (cache.explanation or "").startswith("image changed: 'busybox' → 'busybox:1.37'")

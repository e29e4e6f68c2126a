"""The stage cache on the test bed: the operator stores a cacheable stage's result in a
StageCacheEntry and a later run reuses it (or says why not), against a real API server.

kwok pods report `imageID: kwok://<image>` when they finish (see testbed/stages.py), which is
the digest the entries are keyed on here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubedag.contract import API_GROUP, API_VERSION
from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import (
    create_run,
    event_messages,
    get_run,
    pipeline,
    stage,
    stages_of,
    wait_phase,
)
from tests.integration.support import Cluster, wait_for

ENTRIES = "stagecacheentries"


def cached_pipeline(cluster: Cluster, *, language: str = "en", image: str = "busybox",
                    **cache: Any) -> dict[str, Any]:
    """extract (cached, reads param language) → report (not cached, reads extract's output)."""
    return {"pipelineSpec": pipeline(cluster, [
        stage("extract", image=image, args=["--language", "$(params.language)"],
              outputs={"pages": 12}, cache={"enabled": True, **cache}),
        stage("report", "extract", args=["$(stages.extract.outputs.pages)"]),
    ], params=[{"name": "language", "default": language}])}


def run_to_end(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any],
               timeout: float = 60) -> dict[str, Any]:
    create_run(cluster, namespace, name, spec)
    run = wait_phase(cluster, namespace, name, timeout=timeout)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    return run


def entries(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = cluster.custom.list_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, ENTRIES)["items"]
    return found


def run_jobs(cluster: Cluster, namespace: str, run: str) -> list[str]:
    """The stages of the Jobs a run created."""
    jobs = cluster.batch.list_namespaced_job(namespace, label_selector=f"kubedag.io/run={run}")
    return sorted(job.to_dict()["metadata"]["labels"]["kubedag.io/stage"] for job in jobs.items)


def test_a_second_run_reuses_the_result_and_passes_its_outputs_downstream(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    first = run_to_end(cluster, namespace, "first", cached_pipeline(cluster))
    key = stages_of(first)["extract"]["cache"]["key"]
    [entry] = wait_for(lambda: entries(cluster, namespace) or None, what="the cache entry")
    assert entry["metadata"]["name"] == key
    assert entry["metadata"]["labels"]["kubedag.io/cache-key"] == key[:63]
    assert entry["spec"]["imageDigest"] == "kwok://busybox"
    assert (entry["spec"]["outputs"], entry["spec"]["sourceRun"]) == ({"pages": 12}, "first")
    found = cluster.kubectl("get", ENTRIES, "-n", namespace, "-l",
                            f"kubedag.io/cache-key={key[:63]}", "-o", "name").stdout.split()
    assert found == [f"stagecacheentry.{API_GROUP}/{key}"]

    second = run_to_end(cluster, namespace, "second", cached_pipeline(cluster))
    extract = stages_of(second)["extract"]
    assert (extract["phase"], extract["reason"]) == ("Succeeded", "Cached"), extract
    assert extract["outputs"] == {"pages": 12}
    assert extract["cache"]["hit"] and extract["cache"]["sourceRun"] == "first"
    assert extract["message"].startswith("cached result of run first, ")
    assert run_jobs(cluster, namespace, "second") == ["report"]  # no Job for extract
    report_job = cluster.batch.read_namespaced_job(stages_of(second)["report"]["job"], namespace)
    assert report_job.to_dict()["spec"]["template"]["spec"]["containers"][0]["args"] == ["12"]
    [message] = wait_for(lambda: event_messages(cluster, namespace, "second", "StageCached"),
                         what="the StageCached Event")
    assert "extract (run first, " in message


def test_a_param_change_or_a_new_image_misses_and_the_status_says_why(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    run_to_end(cluster, namespace, "english", cached_pipeline(cluster))
    german = run_to_end(cluster, namespace, "german", cached_pipeline(cluster, language="de"))
    cache = stages_of(german)["extract"]["cache"]
    assert cache["missReason"] == "Changed", cache
    assert "param 'language' changed: 'en' → 'de'" in cache["explanation"]
    assert cache["explanation"].startswith("since run english: ")
    assert run_jobs(cluster, namespace, "german") == ["extract", "report"]

    newer = run_to_end(cluster, namespace, "newer",
                       cached_pipeline(cluster, image="busybox:1.37"))
    cache = stages_of(newer)["extract"]["cache"]
    assert cache["missReason"] == "NoDigest", cache
    assert cache["explanation"].startswith("image changed: 'busybox' → 'busybox:1.37'")
    # Its pod ran the new image: the next run with it hits.
    again = run_to_end(cluster, namespace, "again", cached_pipeline(cluster, image="busybox:1.37"))
    assert stages_of(again)["extract"]["reason"] == "Cached"


def test_entries_past_max_age_are_not_reused_and_are_deleted(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    run_to_end(cluster, namespace, "old", cached_pipeline(cluster, maxAge="2s"))
    assert wait_for(lambda: entries(cluster, namespace) or None, what="the entry")
    # The operator's collector runs every second here (KUBEDAG_CACHE_GC_SECONDS=1).
    wait_for(lambda: not entries(cluster, namespace), what="the expired entry deleted",
             timeout=20)
    later = run_to_end(cluster, namespace, "later", cached_pipeline(cluster, maxAge="2s"))
    extract = stages_of(later)["extract"]
    assert extract.get("reason") != "Cached" and extract["cache"]["missReason"] in (
        "NoEntry", "NoDigest", "Expired"), extract


def test_a_failed_stage_is_never_cached(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    spec = {"pipelineSpec": pipeline(cluster, [
        stage("flaky", exit_code=1, critical=False, cache={"enabled": True})])}
    for name in ("fails", "fails-again"):
        run = run_to_end(cluster, namespace, name, spec)
        assert stages_of(run)["flaky"]["phase"] == "Failed"
    assert entries(cluster, namespace) == []
    assert run_jobs(cluster, namespace, "fails-again") == ["flaky"]


def test_an_identical_stage_waits_for_the_one_computing_its_result(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    """The image pins its digest, so even the first two runs agree on the key."""
    image = "busybox@sha256:" + "0" * 64
    spec = {"pipelineSpec": pipeline(cluster, [
        stage("slow", image=image, duration="4s", outputs={"n": 1}, cache={})])}
    create_run(cluster, namespace, "leader", spec)
    wait_for(lambda: run_jobs(cluster, namespace, "leader") or None, what="the leader's Job")
    create_run(cluster, namespace, "follower", spec)

    def follower_waits() -> bool:
        status = get_run(cluster, namespace, "follower").get("status") or {}
        return ((status.get("stages") or {}).get("slow") or {}).get("reason") == "WaitingForCache"

    wait_for(lambda: follower_waits() or None, what="the follower to wait")
    follower = wait_phase(cluster, namespace, "follower", timeout=60)
    slow = stages_of(follower)["slow"]
    assert (slow["reason"], slow["cache"]["sourceRun"]) == ("Cached", "leader"), slow
    assert run_jobs(cluster, namespace, "follower") == []


def test_the_cache_survives_an_operator_restart(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    run_to_end(cluster, namespace, "before", cached_pipeline(cluster))
    wait_for(lambda: entries(cluster, namespace) or None, what="the entry")
    running_operator.stop()
    running_operator.start()
    after = run_to_end(cluster, namespace, "after", cached_pipeline(cluster))
    assert stages_of(after)["extract"]["reason"] == "Cached"


def test_a_run_with_cache_disabled_or_overwrite(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    run_to_end(cluster, namespace, "fill", cached_pipeline(cluster))
    disabled = run_to_end(cluster, namespace, "disabled",
                          {**cached_pipeline(cluster), "cache": "Disabled"})
    assert stages_of(disabled)["extract"]["cache"]["missReason"] == "Disabled"
    overwrite = run_to_end(cluster, namespace, "overwrite",
                           {**cached_pipeline(cluster), "cache": "Overwrite"})
    assert stages_of(overwrite)["extract"]["cache"]["missReason"] == "Overwrite"
    [entry] = wait_for(lambda: [e for e in entries(cluster, namespace)
                                if e["spec"]["sourceRun"] == "overwrite"] or None,
                       what="the entry replaced")
    assert entry["metadata"]["name"] == stages_of(overwrite)["extract"]["cache"]["key"]


def test_resume_from_reruns_a_stage_whose_definition_changed_and_says_why(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    """No `cache` here: resumeFrom compares the same key on its own."""
    def spec(image: str) -> dict[str, Any]:
        return {"pipelineSpec": pipeline(cluster, [
            stage("a", outputs={"n": 1}), stage("b", "a", image=image, outputs={"m": 2}),
            stage("c", "b", args=["$(stages.b.outputs.m)"])])}

    run_to_end(cluster, namespace, "v1", spec("busybox"))
    create_run(cluster, namespace, "v2", {**spec("busybox:1.37"), "resumeFrom": "v1"})
    v2 = wait_phase(cluster, namespace, "v2")
    assert v2["status"]["phase"] == "Succeeded", v2["status"]
    assert stages_of(v2)["a"]["reason"] == "StageReused"
    assert run_jobs(cluster, namespace, "v2") == ["b", "c"]
    messages = wait_for(lambda: event_messages(cluster, namespace, "v2", "StageChanged")
                        or None, what="the StageChanged Events")
    assert any("image changed: 'busybox' → 'busybox:1.37'" in m for m in messages), messages


# --- the lookup cost does not grow with the number of entries --------------------------------

def _hit_seconds(cluster: Cluster, namespace: str, name: str) -> float:
    """From creating a run whose only stage is cached to its Succeeded phase."""
    spec = {"pipelineSpec": pipeline(cluster, [
        stage("extract", args=["--language", "en"], outputs={"pages": 12},
              cache={"enabled": True})])}
    began = time.perf_counter()
    create_run(cluster, namespace, name, spec)
    run = wait_phase(cluster, namespace, name, timeout=60)
    elapsed = time.perf_counter() - began
    assert stages_of(run)["extract"]["reason"] == "Cached", stages_of(run)
    return elapsed


def _filler_entry(namespace: str, number: int) -> dict[str, Any]:
    key = f"{number:064x}"
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "StageCacheEntry",
            "metadata": {"name": key, "labels": {"kubedag.io/cache-key": key[:63]}},
            "spec": {"key": key, "stage": f"filler-{number % 50}", "pipeline": "filler",
                     "sourceRun": "filler", "image": f"filler:{number % 7}",
                     "imageDigest": f"sha256:{number:064x}",
                     "filledTime": "2026-11-30T00:00:00Z",
                     "components": {"stage": f"filler-{number % 50}"},
                     "outputs": {"n": number}}}


def _median_hit(cluster: Cluster, namespace: str, label: str, times: int = 5) -> float:
    return statistics.median(_hit_seconds(cluster, namespace, f"{label}-{i}")
                             for i in range(times))


def test_a_lookup_costs_the_same_with_10_and_10000_entries(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    """Prints the benchmark figure of the closing note: hit latency (run created → Succeeded
    from the cache) at 10 and at 10,000 entries, and their ratio. Not asserted on time:
    machines are noisy; asserted: every run hit, and the operator indexed all the entries."""
    run_to_end(cluster, namespace, "seed", {"pipelineSpec": pipeline(cluster, [
        stage("extract", args=["--language", "en"], outputs={"pages": 12},
              cache={"enabled": True})])})
    create = _creator(cluster, namespace)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(9)))
    small = _median_hit(cluster, namespace, "small")
    began = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(9, 10_000)))
    filled = time.perf_counter() - began
    wait_for(lambda: _indexed(running_operator) >= 10_000 or None,
             what="the operator to index 10,000 entries", timeout=120)
    large = _median_hit(cluster, namespace, "large")
    print(f"\nstage cache hit latency (run created → Succeeded, median of 5): "
          f"{small * 1000:.0f} ms at 10 entries, {large * 1000:.0f} ms at 10,000 entries: "
          f"ratio {large / small:.2f} (10,000 entries created in {filled:.0f} s)")


def _creator(cluster: Cluster, namespace: str) -> Callable[[int], None]:
    def create(number: int) -> None:
        cluster.custom.create_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, ENTRIES, _filler_entry(namespace, number))
    return create


def _indexed(operator: OperatorProcess) -> int:
    """The operator's own count of entries, from its metrics endpoint."""
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith("kubedag_cache_entries{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)

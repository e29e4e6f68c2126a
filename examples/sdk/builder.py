"""The same kind of pipeline written with the builder: stages by name, containers or processors.

    from examples.sdk.builder import build
    pipeline = build(); print(pipeline.to_yaml())
"""

from __future__ import annotations

from kubedag.sdk import Pipeline


def build() -> Pipeline:
    """A document pipeline: validate, then OCR and extract in parallel, then a summary."""
    pipeline = Pipeline(
        "documents-builder",
        image="ghcr.io/kubedag/worker:0.1.0",
        params={"files": list, "language": "en"},
        max_parallel_stages=4,
    )
    validate = pipeline.add_step(
        "validate", processor="kubedag.worker.processors.documents:validate",
        type="validator", estimated_seconds=5)
    ocr = pipeline.add_step(
        "ocr", image="ghcr.io/example/ocr:2", command=["ocr", "--lang", "$(params.language)"],
        fan_out="$(params.files)", resources={"cpu": "2", "memory": "2Gi", "gpu": 1},
        retry=3, timeout=900, estimated_seconds=120, depends_on=[validate])
    extract = pipeline.add_step(
        "extract", processor="kubedag.worker.processors.documents:extract",
        resources={"cpu": "1", "memory": "1Gi"}, estimated_seconds=60).after(validate)
    pipeline.add_step(
        "summary", command=["sh", "-c", "echo done"], depends_on=[ocr, extract],
        when="params.language != ''", critical=False, outputs={"total": "documents done"})
    pipeline.finally_step("notify", command=["echo", "finished"])
    return pipeline

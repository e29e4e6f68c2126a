"""kubedag.testbed.images without building: the inputs hash and the built.json format."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from kubedag import __version__
from kubedag.testbed import images
from kubedag.testbed.images import BuiltImage, BuiltImages, ImageSpec

REPO = Path(__file__).resolve().parents[2]
SPEC = ImageSpec("thing", "example.org/thing:1", "thing-image/Dockerfile")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "thing-image").mkdir()
    (tmp_path / "thing-image" / "Dockerfile").write_text("FROM scratch\nCOPY src/ src/\n")
    (tmp_path / "thing-image" / "Dockerfile.dockerignore").write_text(
        "*\n!src/\n!pyproject.toml\nsrc/**/__pycache__\n"
    )
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "a.py").write_text("A = 1\n")
    (tmp_path / "elsewhere.py").write_text("")
    return tmp_path


def test_hash_follows_the_sources_but_not_pycache(repo: Path) -> None:
    first = images.image_inputs_hash(repo, SPEC)
    assert first == images.image_inputs_hash(repo, SPEC)

    cache = repo / "src" / "pkg" / "__pycache__"
    cache.mkdir()
    (cache / "a.cpython-311.pyc").write_bytes(b"\0" * 16)
    (repo / "src" / "pkg" / "stray.pyc").write_bytes(b"\0")
    (repo / "elsewhere.py").write_text("not in the build context")
    assert images.image_inputs_hash(repo, SPEC) == first

    (repo / "src" / "pkg" / "a.py").write_text("A = 2\n")
    second = images.image_inputs_hash(repo, SPEC)
    assert second != first

    (repo / "src" / "pkg" / "b.py").write_text("")
    third = images.image_inputs_hash(repo, SPEC)
    assert third != second

    (repo / "src" / "pkg" / "b.py").chmod(0o755)
    assert images.image_inputs_hash(repo, SPEC) != third


def test_hash_follows_the_dockerfile_the_base_and_the_ref(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = images.image_inputs_hash(repo, SPEC)
    (repo / "thing-image" / "Dockerfile").write_text("FROM scratch\nCOPY src/ /src/\n")
    second = images.image_inputs_hash(repo, SPEC)
    assert second != first
    other = ImageSpec("thing", "example.org/thing:2", SPEC.dockerfile)
    assert images.image_inputs_hash(repo, other) != second
    monkeypatch.setitem(images.BASE_RECIPE, "include", ["python3"])
    assert images.image_inputs_hash(repo, SPEC) != second


def test_context_is_what_the_dockerignore_lets_through(repo: Path) -> None:
    assert images.context_sources(repo, SPEC.dockerfile or "") == ["src", "pyproject.toml"]
    assert [p.as_posix() for p in images.context_files(repo, ["src", "pyproject.toml"])] == [
        "pyproject.toml", "src/pkg/a.py",
    ]


@pytest.mark.parametrize("spec", [images.WORKER, images.OPERATOR], ids=lambda s: s.name)
def test_real_contexts_send_no_tests_or_caches(spec: ImageSpec) -> None:
    files = images.context_files(REPO, images.context_sources(REPO, spec.dockerfile or ""))
    names = [f.as_posix() for f in files]
    assert "pyproject.toml" in names and "README.md" in names
    assert not [n for n in names if n.startswith(("tests/", ".venv/")) or "__pycache__" in n]
    if spec is images.WORKER:
        operator = [n for n in names if n.startswith("operator/")]
        assert operator and all(
            n in ("operator/kubedag/__init__.py", "operator/kubedag/contract.py")
            or n.startswith(("operator/kubedag/worker/", "operator/kubedag/sdk/"))
            for n in operator
        ), operator


def test_refs_carry_the_package_version() -> None:
    refs = {s.name: s.ref for s in images.IMAGES}
    assert refs == {
        "worker": f"ghcr.io/kubedag/worker:{__version__}",
        "operator": f"ghcr.io/kubedag/operator:{__version__}",
        "pause": "registry.k8s.io/pause:3.6",
        "busybox": "kubedag.local/busybox:1.35",
    }


def test_built_json_round_trip_and_format(tmp_path: Path) -> None:
    built = BuiltImages("abc", (
        BuiltImage("worker", "ghcr.io/kubedag/worker:0.1.0", "/x/worker.tar", 10, 20,
                   "10001:10001", ["kubedag-worker"], "h1"),
        BuiltImage("pause", "registry.k8s.io/pause:3.6", "/x/pause.tar", 1, 2, "65535:65535"),
    ))
    path = tmp_path / "built.json"
    path.write_text(json.dumps(built.to_json()))
    data = json.loads(path.read_text())
    assert data["inputsHash"] == "abc"
    assert data["images"][0] == {
        "name": "worker", "ref": "ghcr.io/kubedag/worker:0.1.0", "archive": "/x/worker.tar",
        "compressedBytes": 10, "uncompressedBytes": 20, "user": "10001:10001",
        "entrypoint": ["kubedag-worker"], "inputsHash": "h1",
    }
    loaded = BuiltImages.load(path)
    assert loaded == built
    assert loaded["pause"].user == "65535:65535"
    with pytest.raises(KeyError):
        loaded["nope"]


def test_built_json_minimal_form_parses(tmp_path: Path) -> None:
    """The form the test bed documents: no entrypoint, no per-image hash."""
    path = tmp_path / "built.json"
    path.write_text(json.dumps({"inputsHash": "x", "images": [{
        "name": "busybox", "ref": "kubedag.local/busybox:1.35", "archive": "/b.tar",
        "compressedBytes": 1, "uncompressedBytes": 2, "user": "0:0"}]}))
    loaded = BuiltImages.load(path)
    assert loaded is not None and loaded["busybox"].entrypoint == []


@pytest.mark.parametrize("text", ["", "{", "[]", '{"images": []}'])
def test_unreadable_built_json_means_rebuild(tmp_path: Path, text: str) -> None:
    path = tmp_path / "built.json"
    path.write_text(text)
    assert BuiltImages.load(path) is None
    assert BuiltImages.load(tmp_path / "missing.json") is None


def test_pause_source_reaps_and_exits_on_signals() -> None:
    assert "waitpid(-1" in images.PAUSE_C and "SIGTERM" in images.PAUSE_C
    assert re.search(r"for \(;;\) pause\(\);", images.PAUSE_C)


def _docker_archive(path: Path, layer: bytes) -> None:
    """A one-layer docker-archive as skopeo writes it (the layer.tar is a link to the blob)."""
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("abc.tar", layer)
        link = tarfile.TarInfo("d1/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../abc.tar"
        tar.addfile(link)
        add("cfg.json", json.dumps({"config": {"User": "10001:10001"}}).encode())
        add("manifest.json", json.dumps(
            [{"Config": "cfg.json", "RepoTags": ["x:1"], "Layers": ["d1/layer.tar"]}]).encode())


def test_archive_sizes_and_config(tmp_path: Path) -> None:
    archive = tmp_path / "x.tar"
    layer = b"a" * 100_000
    _docker_archive(archive, layer)
    known: dict[str, int] = {}
    compressed, uncompressed, config = images.archive_facts(archive, known)
    assert uncompressed == len(layer)
    assert 0 < compressed < 1000  # gzip of a run of one byte
    assert config["config"]["User"] == "10001:10001"
    assert known == {"d1/layer.tar": compressed}
    known["d1/layer.tar"] = 7  # a known layer is not compressed again
    assert images.archive_facts(archive, known)[:2] == (7, len(layer))

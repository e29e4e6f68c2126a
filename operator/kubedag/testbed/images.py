"""kubedag's images, built here without a Docker engine: `make images`, or ``ensure_images()``.

The worker and operator images are built by buildah from the same Dockerfiles users build
(``worker-image/Dockerfile``, ``operator-image/Dockerfile``), with ``--build-arg BASE_IMAGE``
pointing at a Debian bookworm base made here (debootstrap minbase + python3, trimmed), since
``python:3.11-slim`` cannot be pulled here. Two small images for the test bed's real node are
built beside them: ``registry.k8s.io/pause:3.6`` (a static C pause that reaps children and exits
on SIGINT/SIGTERM) and ``kubedag.local/busybox:1.35`` (busybox-static).

Everything is cached under ``~/.cache/kubedag/images/`` (``$KUBEDAG_CACHE``): buildah's storage,
one docker-archive tarball per image (what ``ctr -n k8s.io images import`` takes) and
``built.json``, which the test bed reads. An image is rebuilt only when its inputs change: a
content hash over its Dockerfile, the files its build context sends (the ``!`` lines of
``<Dockerfile>.dockerignore``, without ``__pycache__``), the base recipe and this module.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubedag import __version__
from kubedag.testbed.versions import cache_root

REPO = Path(__file__).resolve().parents[3]
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")  # pip's CA here (PyPI behind a private CA)
MB = 1_000_000
# Bump when the way images are built changes (not their inputs): every image is rebuilt.
BUILDER_VERSION = 1

# The Debian base: what `python:3.11-slim` gives the Dockerfiles, made here. Change BASE_RECIPE
# (or the trim list) and the base and every image on it are rebuilt.
BASE_RECIPE: dict[str, Any] = {
    "suite": "bookworm",
    "variant": "minbase",
    "include": ["python3", "python3-venv", "ca-certificates"],
    "mirror": "http://deb.debian.org/debian",
    # Removed from the rootfs: what no container needs (docs but their copyright files, man
    # pages, locales, apt's caches and lists, logs).
    "trim": ["var/cache/apt/*", "var/lib/apt/lists/*", "usr/share/man/*", "usr/share/info/*",
             "usr/share/locale/*", "usr/share/lintian/*", "var/log/*", "var/cache/debconf/*-old"],
    "trimDocs": True,
}
BASE_REPOSITORY = "kubedag.local/base-bookworm-python3"

PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void down(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction a = {0};
  a.sa_handler = down; sigaction(SIGINT, &a, NULL); sigaction(SIGTERM, &a, NULL);
  a.sa_handler = reap; a.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &a, NULL);
  for (;;) pause();
}
"""


@dataclass(frozen=True)
class ImageSpec:
    name: str
    ref: str
    dockerfile: str | None = None  # relative to the repository; None: assembled from scratch
    target_compressed: int | None = None  # bytes (gzip of the layers)


WORKER = ImageSpec("worker", f"ghcr.io/kubedag/worker:{__version__}",
                   "worker-image/Dockerfile", 60 * MB)
OPERATOR = ImageSpec("operator", f"ghcr.io/kubedag/operator:{__version__}",
                     "operator-image/Dockerfile", 120 * MB)
PAUSE = ImageSpec("pause", "registry.k8s.io/pause:3.6")
BUSYBOX = ImageSpec("busybox", "kubedag.local/busybox:1.35")
IMAGES = (WORKER, OPERATOR, PAUSE, BUSYBOX)


@dataclass(frozen=True)
class BuiltImage:
    name: str
    ref: str
    archive: str
    compressed_bytes: int
    uncompressed_bytes: int
    user: str
    entrypoint: list[str] = field(default_factory=list)
    inputs_hash: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "ref": self.ref, "archive": self.archive,
            "compressedBytes": self.compressed_bytes,
            "uncompressedBytes": self.uncompressed_bytes,
            "user": self.user, "entrypoint": self.entrypoint, "inputsHash": self.inputs_hash,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuiltImage:
        return cls(
            name=str(data["name"]), ref=str(data["ref"]), archive=str(data["archive"]),
            compressed_bytes=int(data["compressedBytes"]),
            uncompressed_bytes=int(data["uncompressedBytes"]),
            user=str(data.get("user", "")),
            entrypoint=[str(e) for e in data.get("entrypoint") or []],
            inputs_hash=str(data.get("inputsHash", "")),
        )


@dataclass(frozen=True)
class BuiltImages:
    inputs_hash: str
    images: tuple[BuiltImage, ...]

    def __getitem__(self, name: str) -> BuiltImage:
        for image in self.images:
            if image.name == name:
                return image
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {"inputsHash": self.inputs_hash, "images": [i.to_json() for i in self.images]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuiltImages:
        return cls(str(data["inputsHash"]),
                   tuple(BuiltImage.from_json(i) for i in data.get("images") or []))

    @classmethod
    def load(cls, path: Path) -> BuiltImages | None:
        """The result file, or None when it is missing or unreadable (then everything rebuilds)."""
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None


# --- inputs ------------------------------------------------------------------------------------

def context_sources(repo: Path, dockerfile: str) -> list[str]:
    """What the build context sends: the ``!`` lines of ``<Dockerfile>.dockerignore``."""
    ignore = repo / f"{dockerfile}.dockerignore"
    return [line[1:].strip().rstrip("/") for line in ignore.read_text().splitlines()
            if line.startswith("!")]


def context_files(repo: Path, sources: Sequence[str]) -> list[Path]:
    """Every file under ``sources``, sorted, without ``__pycache__`` and ``*.pyc``."""
    files: set[Path] = set()
    for source in sources:
        path = repo / source
        candidates = path.rglob("*") if path.is_dir() else [path]
        for file in candidates:
            relative = file.relative_to(repo)
            if "__pycache__" in relative.parts or file.suffix == ".pyc" or not file.is_file():
                continue
            files.add(relative)
    return sorted(files)


def hash_files(repo: Path, files: Sequence[Path], *extra: str) -> str:
    """sha256 over (path, mode's executable bit, content) of each file, then ``extra`` strings."""
    digest = hashlib.sha256()
    for relative in files:
        path = repo / relative
        digest.update(f"{relative.as_posix()}\0{os.access(path, os.X_OK):d}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for item in extra:
        digest.update(b"\0" + item.encode())
    return digest.hexdigest()


def base_key() -> str:
    return hashlib.sha256(json.dumps(BASE_RECIPE, sort_keys=True).encode()).hexdigest()[:16]


def base_ref() -> str:
    return f"{BASE_REPOSITORY}:{base_key()}"


def image_inputs_hash(repo: Path, spec: ImageSpec) -> str:
    """What decides an image's content: its Dockerfile and build context and the base (or, for
    the images assembled here, their recipe), plus BUILDER_VERSION."""
    extra = [str(BUILDER_VERSION), spec.ref]
    if spec.dockerfile is None:
        if spec is PAUSE:
            extra.append(PAUSE_C)
        else:
            extra.append(hashlib.sha256(Path(_busybox()).read_bytes()).hexdigest())
        return hash_files(repo, [], *extra)
    files = context_files(repo, [spec.dockerfile, f"{spec.dockerfile}.dockerignore",
                                 *context_sources(repo, spec.dockerfile)])
    return hash_files(repo, files, *extra, base_ref())


# --- buildah -----------------------------------------------------------------------------------

class Buildah:
    """buildah and skopeo on a storage of our own, under the cache (overlay; vfs as fallback)."""

    def __init__(self, cache: Path) -> None:
        self.root = cache / "buildah" / "root"
        self.runroot = cache / "buildah" / "runroot"
        self.driver = os.environ.get("KUBEDAG_BUILDAH_DRIVER", "overlay")

    def command(self, *args: str) -> list[str]:
        return ["buildah", "--root", str(self.root), "--runroot", str(self.runroot),
                "--storage-driver", self.driver, *args]

    def __call__(self, *args: str, capture: bool = False) -> str:
        command = self.command(*args)
        done = subprocess.run(command, check=False, text=True,
                              stdout=subprocess.PIPE if capture else None)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}")
        return (done.stdout or "").strip()

    def exists(self, ref: str) -> bool:
        done = subprocess.run(
            self.command("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref),
            check=False, capture_output=True, text=True,
        )
        return done.returncode == 0

    def discard(self, container: str) -> None:
        """Remove a working container after a failed step (best effort: it may be gone)."""
        subprocess.run(self.command("rm", container), check=False, capture_output=True)

    def export(self, ref: str, archive: Path) -> None:
        """A docker-archive tarball tagged ``ref``, as `ctr images import` wants it."""
        partial = archive.with_suffix(".tar.partial")
        partial.unlink(missing_ok=True)
        store = f"containers-storage:[{self.driver}@{self.root}+{self.runroot}]{ref}"
        _run(["skopeo", "copy", "--quiet", store, f"docker-archive:{partial}:{ref}"])
        partial.replace(archive)


def _run(command: Sequence[str], **kwargs: Any) -> None:
    done = subprocess.run(list(command), check=False, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}")


def _busybox() -> str:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(candidate).exists():
            return candidate
    raise RuntimeError("busybox not found: apt-get install busybox-static")


def ensure_base(buildah: Buildah, cache: Path) -> str:
    """The Debian base in buildah's storage, made by debootstrap once per recipe."""
    ref = base_ref()
    if buildah.exists(ref):
        return ref
    started = time.monotonic()
    print(f"images: making the base {ref} (debootstrap, a few minutes)", flush=True)
    work = cache / "base-work"
    rootfs, done = work / "rootfs", work / f"debootstrap-{base_key()}.done"
    if not done.exists():  # a finished debootstrap survives a failed commit
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        with (work / "debootstrap.log").open("w") as log:
            _run(["debootstrap", f"--variant={BASE_RECIPE['variant']}",
                  f"--include={','.join(BASE_RECIPE['include'])}", BASE_RECIPE["suite"],
                  str(rootfs), BASE_RECIPE["mirror"]], stdout=log, stderr=subprocess.STDOUT)
        done.touch()
    for pattern in BASE_RECIPE["trim"]:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    if BASE_RECIPE["trimDocs"]:
        for path in (rootfs / "usr/share/doc").rglob("*"):
            if path.is_file() and path.name != "copyright":
                path.unlink()
    for name in ("etc/resolv.conf", "etc/hostname"):  # the runtime provides these
        (rootfs / name).unlink(missing_ok=True)
        (rootfs / name).touch()
    container = buildah("from", "--quiet", "scratch", capture=True)
    try:
        mount = buildah("mount", container, capture=True)
        with subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."],
                              stdout=subprocess.PIPE) as pack:
            _run(["tar", "-C", mount, "--numeric-owner", "-xpf", "-"], stdin=pack.stdout)
        buildah("config", "--os", "linux", "--arch", "amd64", "--cmd", "/bin/sh",
                "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env", "LANG=C.UTF-8", container)
        buildah("commit", "--quiet", "--rm", container, ref, capture=True)
    except BaseException:
        buildah.discard(container)
        raise
    shutil.rmtree(work, ignore_errors=True)
    print(f"images: base made in {time.monotonic() - started:.0f}s", flush=True)
    return ref


def build_from_dockerfile(buildah: Buildah, repo: Path, spec: ImageSpec, base: str) -> None:
    """`buildah bud` on a context holding exactly what the dockerignore lets through."""
    assert spec.dockerfile is not None
    with tempfile.TemporaryDirectory(prefix=f"kubedag-{spec.name}-context-") as tmp:
        context = Path(tmp)
        for relative in context_files(repo, context_sources(repo, spec.dockerfile)):
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / relative, context / relative)
        args = ["bud", "--isolation", "chroot", "--layers", "--quiet",
                "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"VERSION={__version__}",
                "-f", str(repo / spec.dockerfile), "-t", spec.ref]
        if HOST_CA.exists():
            args += ["--secret", f"id=pipcert,src={HOST_CA}"]
        buildah(*args, str(context), capture=True)  # prints only the image id


def build_pause(buildah: Buildah) -> None:
    with tempfile.TemporaryDirectory(prefix="kubedag-pause-") as tmp:
        source, binary = Path(tmp) / "pause.c", Path(tmp) / "pause"
        source.write_text(PAUSE_C)
        if not shutil.which("gcc"):
            raise RuntimeError("gcc not found: apt-get install gcc libc6-dev (a static pause)")
        _run(["gcc", "-static", "-Os", "-s", "-o", str(binary), str(source)])
        _commit_scratch(buildah, PAUSE.ref, [(binary, "/pause")],
                        ["--entrypoint", '["/pause"]', "--user", "65535:65535"])


def build_busybox(buildah: Buildah) -> None:
    with tempfile.TemporaryDirectory(prefix="kubedag-busybox-") as tmp:
        root = Path(tmp) / "rootfs"
        for directory in ("bin", "etc", "tmp", "proc", "sys", "dev", "root"):
            (root / directory).mkdir(parents=True)
        (root / "tmp").chmod(0o1777)
        shutil.copy2(_busybox(), root / "bin" / "busybox")
        applets = subprocess.run([_busybox(), "--list"], check=True, capture_output=True,
                                 text=True).stdout.split()
        for applet in applets:
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                             "nobody:x:65534:65534:nobody:/:/bin/false\n")
        (root / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")
        _commit_scratch(buildah, BUSYBOX.ref, [(root, "/")],
                        ["--cmd", "sh", "--env", "PATH=/bin", "--user", "0:0"])


def _commit_scratch(buildah: Buildah, ref: str, copies: Sequence[tuple[Path, str]],
                    config: Sequence[str]) -> None:
    container = buildah("from", "--quiet", "scratch", capture=True)
    try:
        mount = Path(buildah("mount", container, capture=True))
        for source, destination in copies:
            target = mount / destination.lstrip("/")
            if source.is_dir():
                _run(["cp", "-a", f"{source}/.", str(target)])
            else:
                shutil.copy2(source, target)
        buildah("config", "--os", "linux", "--arch", "amd64", *config, container)
        buildah("commit", "--quiet", "--rm", container, ref, capture=True)
    except BaseException:
        buildah.discard(container)
        raise


# --- archives ----------------------------------------------------------------------------------

def archive_facts(archive: Path, known: dict[str, int] | None = None
                  ) -> tuple[int, int, dict[str, Any]]:
    """(gzip bytes of the layers, uncompressed bytes of the layers, image config).

    ``known`` maps a layer's name in the archive (its sha256) to its gzip size; layers found
    there are not compressed again, and new ones are added.
    """
    known = {} if known is None else known
    compressed = uncompressed = 0
    with tarfile.open(archive) as tar:
        manifest = json.load(_member(tar, "manifest.json"))[0]
        config: dict[str, Any] = json.load(_member(tar, manifest["Config"]))
        for layer in manifest["Layers"]:
            if layer in known:
                uncompressed += _info(tar, layer).size
                compressed += known[layer]
                continue
            stream = _member(tar, layer)
            gzip = zlib.compressobj(6, zlib.DEFLATED, 31)  # what a registry stores
            size = 0
            while chunk := stream.read(1 << 20):
                uncompressed += len(chunk)
                size += len(gzip.compress(chunk))
            known[layer] = size + len(gzip.flush())
            compressed += known[layer]
    return compressed, uncompressed, config


def _info(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    member = tar.getmember(name)
    while member.issym() or member.islnk():  # docker-archive links layer.tar to the blob
        target = member.linkname if member.islnk() else os.path.normpath(
            os.path.join(os.path.dirname(member.name), member.linkname))
        member = tar.getmember(target)
    return member


def _member(tar: tarfile.TarFile, name: str) -> Any:
    stream = tar.extractfile(_info(tar, name))
    if stream is None:
        raise ValueError(f"{name} is not a file in the archive")
    return stream


# --- ensure ------------------------------------------------------------------------------------

def images_dir() -> Path:
    return cache_root() / "images"


def result_path() -> Path:
    return images_dir() / "built.json"


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_images(repo: Path = REPO, *, force: bool = False) -> BuiltImages:
    """Build what changed since the last run (nothing, usually) and return built.json's content."""
    cache = images_dir()
    with _locked(cache):
        previous = BuiltImages.load(result_path())
        kept = {i.name: i for i in previous.images} if previous else {}
        hashes = {spec.name: image_inputs_hash(repo, spec) for spec in IMAGES}
        results: list[BuiltImage] = []
        buildah = Buildah(cache)
        base: str | None = None
        sizes_file = cache / "layer-gzip-sizes.json"
        try:
            layer_sizes: dict[str, int] = json.loads(sizes_file.read_text())
        except (OSError, ValueError):
            layer_sizes = {}
        for spec in IMAGES:
            old = kept.get(spec.name)
            if (not force and old is not None and old.inputs_hash == hashes[spec.name]
                    and old.ref == spec.ref and Path(old.archive).is_file()):
                results.append(old)
                continue
            started = time.monotonic()
            print(f"images: building {spec.ref}", flush=True)
            if spec.dockerfile is not None:
                base = base or ensure_base(buildah, cache)
                build_from_dockerfile(buildah, repo, spec, base)
            elif spec is PAUSE:
                build_pause(buildah)
            else:
                build_busybox(buildah)
            archive = cache / f"{spec.name}.tar"
            buildah.export(spec.ref, archive)
            compressed, uncompressed, config = archive_facts(archive, layer_sizes)
            settings = config.get("config") or {}
            results.append(BuiltImage(
                spec.name, spec.ref, str(archive), compressed, uncompressed,
                str(settings.get("User") or "0:0"), list(settings.get("Entrypoint") or []),
                hashes[spec.name],
            ))
            print(f"images: {spec.ref} built in {time.monotonic() - started:.0f}s", flush=True)
        if base is not None:  # intermediate layers of superseded builds
            subprocess.run(["buildah", "--root", str(buildah.root), "--runroot",
                            str(buildah.runroot), "--storage-driver", buildah.driver, "rmi",
                            "--prune"], check=False, capture_output=True)
        sizes_file.write_text(json.dumps(layer_sizes))
        total = hashlib.sha256("".join(hashes[s.name] for s in IMAGES).encode()).hexdigest()
        built = BuiltImages(total, tuple(results))
        partial = result_path().with_suffix(".json.partial")
        partial.write_text(json.dumps(built.to_json(), indent=2) + "\n")
        partial.replace(result_path())
        return built


# --- checks ------------------------------------------------------------------------------------

def run_in_image(image: BuiltImage, command: Sequence[str], user: str | None = None,
                 env: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in the image's unpacked rootfs, read-only, as the image's user (root only).

    The archive's layers are unpacked (:func:`unpack`), bind-mounted read-only in a private mount
    namespace, and entered with ``chroot --userspec``: no container runtime needed.
    """
    with tempfile.TemporaryDirectory(prefix=f"kubedag-{image.name}-run-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        unpack(Path(image.archive), rootfs)
        script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
                  'mount -t tmpfs tmpfs "$1/tmp" 2>/dev/null; shift; exec "$@"')
        userspec = user or image.user
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
             str(rootfs), "chroot", f"--userspec={userspec}", str(rootfs),
             "env", "-i", "PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
             "HOME=/tmp", "PYTHONDONTWRITEBYTECODE=1", *env, *command],
            check=False, capture_output=True, text=True, timeout=300,
        )


def unpack(archive: Path, rootfs: Path) -> None:
    """A docker-archive's layers, in order, into ``rootfs`` (as root: owners kept), whiteouts
    applied. GNU tar reads each layer straight out of the archive."""
    rootfs.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        manifest = json.load(_member(tar, "manifest.json"))[0]
        for layer in manifest["Layers"]:
            with tarfile.open(fileobj=_member(tar, layer)) as inner:
                names = [os.path.normpath(n) for n in inner.getnames()]
            for name in names:
                directory, base = os.path.split(name)
                if base == ".wh..wh..opq":  # opaque directory: hide what lower layers put there
                    for child in (rootfs / directory).glob("*"):
                        _remove(child)
                elif base.startswith(".wh."):
                    _remove(rootfs / directory / base.removeprefix(".wh."))
            with subprocess.Popen(["tar", "--numeric-owner", "-xpf", "-", "-C", str(rootfs)],
                                  stdin=subprocess.PIPE) as untar:
                assert untar.stdin is not None
                shutil.copyfileobj(_member(tar, layer), untar.stdin, 1 << 20)
                untar.stdin.close()
            if untar.returncode != 0:
                raise RuntimeError(f"unpacking {layer} of {archive} failed")
            for name in names:
                if os.path.basename(name).startswith(".wh."):
                    (rootfs / name).unlink(missing_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def describe(built: BuiltImages) -> str:
    lines = [f"{'image':<40} {'compressed':>11} {'uncompressed':>13}  target   user"]
    for image in built.images:
        spec = next(s for s in IMAGES if s.name == image.name)
        target = ""
        if spec.target_compressed:
            ok = "ok" if image.compressed_bytes <= spec.target_compressed else "OVER"
            target = f"<= {spec.target_compressed // MB} MB {ok}"
        lines.append(f"{image.ref:<40} {image.compressed_bytes / MB:>8.1f} MB "
                     f"{image.uncompressed_bytes / MB:>10.1f} MB  {target:<10} {image.user}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubedag.testbed.images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["ensure", "show"], nargs="?", default="ensure")
    parser.add_argument("--force", action="store_true", help="rebuild every image")
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args(argv)
    if args.command == "show":
        built = BuiltImages.load(result_path())
        if built is None:
            print(f"no {result_path()}: run `make images`", file=sys.stderr)
            return 1
    else:
        started = time.monotonic()
        built = ensure_images(args.repo, force=args.force)
        print(f"images: ready in {time.monotonic() - started:.1f}s ({result_path()})")
    print(describe(built))
    targets = {s.name: s.target_compressed for s in IMAGES if s.target_compressed}
    over = [i.name for i in built.images if i.compressed_bytes > targets.get(i.name, sys.maxsize)]
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())


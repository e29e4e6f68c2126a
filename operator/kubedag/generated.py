"""Write generated files, or check them: the CRDs and the dashboards share this, so "the
models are the single source of truth" is enforced the same way for both."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from pathlib import Path


def write_or_check(files: Mapping[str, str], out: Path, *, check: bool, regenerate: str) -> int:
    """Write ``files`` (name → text) under ``out``; with ``check``, write nothing and print a
    diff of each stale file. Returns the exit code: 1 when ``check`` found stale files."""
    stale = 0
    for name, text in files.items():
        path = out / name
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        if check:
            stale += 1
            sys.stdout.writelines(difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True),
                fromfile=str(path), tofile=f"{path} (generated)"))
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"\n{stale} generated file(s) out of date in {out}; run `{regenerate}`",
              file=sys.stderr)
        return 1
    return 0

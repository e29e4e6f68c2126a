"""Saving what the test bed started (a control plane, a real node) to JSON and reading it back,
so a later command (`make cluster-down`, a run after a crash) can stop it."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def save_state(obj: DataclassInstance, path: Path) -> None:
    path.write_text(json.dumps(asdict(obj), default=str, indent=2))


def load_state(cls: type[T], path: Path) -> T:
    """The dataclass back, its `Path` fields as paths again (JSON keeps them as strings)."""
    data = json.loads(path.read_text())
    for field in fields(cls):
        if field.type in ("Path", Path) and data.get(field.name) is not None:
            data[field.name] = Path(data[field.name])
    return cls(**data)

"""kubectl from the pinned binaries, for test-bed components that install objects.

Server-side apply is what these components need: their manifests (Kueue's CRDs above all) are too
large for client-side apply's last-applied annotation, and a second start must update in place.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

import yaml

from kubedag.testbed.cluster import ControlPlane, ControlPlaneError


def kubectl(plane: ControlPlane, *args: str, input: str | None = None) -> str:
    """Run the pinned kubectl against ``plane``; its stdout, or ControlPlaneError with stderr."""
    result = subprocess.run([str(plane.bin_dir / "kubectl"), *args], env=plane.env(),
                            input=input, capture_output=True, text=True, timeout=60,
                            check=False)
    if result.returncode != 0:
        raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                f"{result.stderr}")
    return result.stdout


def apply(plane: ControlPlane, objects: Sequence[dict[str, Any]], field_manager: str) -> None:
    """Server-side apply ``objects`` (taking over fields another manager set)."""
    text = "\n---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)
    kubectl(plane, "apply", "--server-side", "--force-conflicts",
            f"--field-manager={field_manager}", "-f", "-", input=text)

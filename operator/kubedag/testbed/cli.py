"""`kubedag-testbed up|down|status`: the local control plane for `make cluster-up` and the demo."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kubedag.testbed import processes
from kubedag.testbed.cluster import ControlPlane, start_control_plane

STATE_FILE = "state.json"


def _up(state_dir: Path) -> int:
    state = state_dir / STATE_FILE
    if state.exists():
        plane = ControlPlane.load(state)
        if plane.pids and all(processes.alive(p) for p in plane.pids.values()):
            print(f"already running; KUBECONFIG={state_dir.resolve() / 'kubeconfig'}")
            return 0
        plane.stop()
    existing = os.environ.get("KUBEDAG_KUBECONFIG")
    plane = start_control_plane(
        existing_kubeconfig=Path(existing) if existing else None, tie_to_parent=False
    )
    state_dir.mkdir(parents=True, exist_ok=True)
    plane.save(state)
    # Stable paths for humans and scripts; the run directory changes on every start.
    link = state_dir / "kubeconfig"
    link.unlink(missing_ok=True)
    link.symlink_to(plane.kubeconfig)
    (state_dir / "bindir").write_text(str(plane.bin_dir))
    print(f"control plane up in {plane.started_in_seconds} s; logs in {plane.log_dir}")
    print(f"export KUBECONFIG={link.resolve()} PATH={plane.bin_dir}:$PATH")
    return 0


def _down(state_dir: Path) -> int:
    state = state_dir / STATE_FILE
    if not state.exists():
        print("no control plane recorded in", state_dir)
        return 0
    ControlPlane.load(state).stop()
    state.unlink()
    (state_dir / "kubeconfig").unlink(missing_ok=True)
    print("control plane stopped")
    return 0


def _status(state_dir: Path) -> int:
    state = state_dir / STATE_FILE
    if not state.exists():
        print("down")
        return 1
    plane = ControlPlane.load(state)
    for name, pid in plane.pids.items():
        print(f"{name:<24} pid {pid:<8} {'running' if processes.alive(pid) else 'DEAD'}")
    print(f"kubeconfig {plane.kubeconfig}\nlogs       {plane.log_dir}")
    return 0 if all(processes.alive(p) for p in plane.pids.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubedag-testbed", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=Path(".testbed"))
    args = parser.parse_args(argv)
    commands = {"up": _up, "down": _down, "status": _status}
    return commands[args.command](args.state_dir)


if __name__ == "__main__":
    sys.exit(main())

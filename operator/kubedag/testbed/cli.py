"""`kubedag-testbed up|down|status`: the local control plane for `make cluster-up` and the demo."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kubedag.testbed import processes
from kubedag.testbed.cluster import ControlPlane, start_control_plane
from kubedag.testbed.kueue import COMPONENT as KUEUE
from kubedag.testbed.kueue import start_kueue

STATE_FILE = "state.json"


def _up(state_dir: Path, *, kueue: bool) -> int:
    state = state_dir / STATE_FILE
    if state.exists():
        plane = ControlPlane.load(state)
        if plane.pids and all(processes.alive(p) for p in plane.pids.values()):
            if kueue and KUEUE not in plane.pids:
                _start_kueue(plane, state)
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
    if kueue:
        _start_kueue(plane, state)
    print(f"export KUBECONFIG={link.resolve()} PATH={plane.bin_dir}:$PATH")
    return 0


def _start_kueue(plane: ControlPlane, state: Path) -> None:
    handle = start_kueue(plane)
    plane.save(state)  # so that `down` stops it with the rest
    print(f"Kueue {handle.version} up (examples/kueue/ has queues to apply); log: {handle.log}")


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
    parser.add_argument("--kueue", action="store_true",
                        help="up: also run Kueue (its CRDs, webhooks and manager)")
    args = parser.parse_args(argv)
    if args.command == "up":
        return _up(args.state_dir, kueue=args.kueue)
    commands = {"down": _down, "status": _status}
    return commands[args.command](args.state_dir)


if __name__ == "__main__":
    sys.exit(main())

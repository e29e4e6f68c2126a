"""``kubedag-worker``: the entrypoint of every stage container.

``kubedag-worker run [module:function]`` calls a processor (else ``$KUBEDAG_PROCESSOR``);
``kubedag-worker run -- cmd args...`` runs a command as a child. Everything about the stage
comes from the env the operator sets (``kubedag.contract``); flags exist for local runs/tests.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    from kubedag.worker.progress import DEFAULT_INTERVAL  # noqa: PLC0415 - see main

    parser = argparse.ArgumentParser(
        prog="kubedag-worker", description="Run one kubedag stage attempt."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser(
        "run",
        help="run a processor function or, after --, a command",
        usage="kubedag-worker run [options] [module:function] | [options] -- cmd [args...]",
    )
    run_parser.add_argument(
        "processor", nargs="?", help="module:function (default: $KUBEDAG_PROCESSOR)"
    )
    run_parser.add_argument(
        "--termination-path",
        help="where to write the result (default: $KUBEDAG_TERMINATION_MESSAGE_PATH, "
        "else /dev/termination-log)",
    )
    run_parser.add_argument(
        "--progress-interval", type=float, default=DEFAULT_INTERVAL,
        help="minimum seconds between progress patches (default: %(default)s)",
    )
    run_parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="DEBUG also logs every progress patch sent",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, and return the exit code (console scripts pass it to sys.exit).

    SIGTERM is blocked first, and the runner unblocks it once its handler is in place: the
    worker is PID 1 in its container, and the kernel drops a signal PID 1 has no handler for,
    so a cancel in the first fraction of a second (imports, parsing) would otherwise be lost
    and the pod killed only at the end of its grace period. A blocked signal stays pending.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    from kubedag.worker.runner import Settings, run  # noqa: PLC0415 - after the block
    from kubedag.worker.termination import termination_path  # noqa: PLC0415

    args_list = list(sys.argv[1:] if argv is None else argv)
    # Split at the first "--" ourselves: argparse would otherwise eat options meant for the command.
    command: list[str] = []
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, command = args_list[:cut], args_list[cut + 1 :]
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.processor and command:
        parser.error("give either a processor or a command after --, not both")
    if "--" in (argv if argv is not None else sys.argv[1:]) and not command:
        parser.error("no command after --")
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = Settings(
        env=dict(os.environ),
        termination_path=termination_path(args.termination_path),
        processor=args.processor,
        command=command,
        progress_interval=args.progress_interval,
    )
    return run(settings)

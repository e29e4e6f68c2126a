"""`kubedag-operator`: run the operator (cluster-wide, or in KUBEDAG_NAMESPACES)."""

from __future__ import annotations

import argparse
import logging
import os
import socket

import kopf
from kopf._cogs.structs.references import Insights
from kopf._core.engines.peering import Identity

from kubedag.shell import handlers  # importing registers the handlers
from kubedag.shell.settings import OperatorSettings
from kubedag.shell.watchdecode import decode_watch_events_with_orjson


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kubedag-operator", description=__doc__)
    parser.add_argument("--peering", default=None,
                        help="kopf peering name for leader election between replicas "
                        "(default: standalone, one replica)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz",
                        help="liveness endpoint URL")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # kopf logs every handler call at INFO: thousands of lines a minute on a busy cluster.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings = OperatorSettings.from_env()
    decode_watch_events_with_orjson()
    insights = Insights()
    if settings.kueue:
        handlers.watch_workloads(insights)
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        standalone=args.peering is None,
        peering_name=args.peering,
        liveness_endpoint=args.liveness or None,
        identity=Identity(operator_identity()),
        insights=insights,
    )


def operator_identity() -> str:
    """Who this replica is to its peers: the pod's name (the hostname) and pid.

    kopf's own default asks the user database for the uid's name, and a container running as
    an arbitrary numeric uid (the chart's runAsUser, OpenShift's random uids) has none: kopf
    then dies at start with `getpwuid(): uid not found`.
    """
    return f"kubedag@{socket.gethostname()}/{os.getpid()}"


if __name__ == "__main__":
    main()

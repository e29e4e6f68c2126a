"""The operator starts under any numeric uid, with or without a user database entry."""

from __future__ import annotations

import os
import socket

from kubedag.shell.main import operator_identity


def test_identity_needs_no_user_database() -> None:
    identity = operator_identity()
    assert identity == f"kubedag@{socket.gethostname()}/{os.getpid()}"

"""Resolving a ``module:function`` processor reference into something callable.

Every way this can fail (malformed reference, missing module, missing attribute, an import that
blows up) means the stage points at code the image does not have: a usage error the Pipeline's
author must fix, not something a retry would cure.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from kubedag.worker.errors import UsageError

# The same shape the Stage schema accepts for its `processor` field.
_REFERENCE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")

Processor = Callable[..., Any]


def load_processor(reference: str) -> Processor:
    if not _REFERENCE.match(reference):
        raise UsageError(f"processor {reference!r} is not of the form 'package.module:function'")
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise UsageError(
            f"cannot import processor module {module_name!r}: {type(error).__name__}: {error}"
        ) from error
    function = getattr(module, attribute, None)
    if function is None:
        raise UsageError(f"module {module_name!r} has no processor {attribute!r}")
    if not callable(function):
        raise UsageError(f"processor {reference!r} is not callable")
    processor: Processor = function
    return processor

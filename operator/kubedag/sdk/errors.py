"""The SDK's one exception: a pipeline that cannot be built or would be rejected.

Import-light (standard library only), like everything the worker may import with a user module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubedag.core.dag import FieldError


class PipelineDefinitionError(ValueError):
    """What is wrong with a pipeline, each problem named by step and field path.

    A ValueError, so code that already guards against bad values catches it; `errors` holds
    the individual problems (field path and message) for tools.
    """

    def __init__(self, message: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)

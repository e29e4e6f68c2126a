"""The worker runtime: what runs inside every stage's container.

Processors import their context type and the errors that choose an exit code from here.
"""

from kubedag.worker.context import Context
from kubedag.worker.errors import PermanentError, RetryableError, UsageError

__all__ = ["Context", "PermanentError", "RetryableError", "UsageError"]

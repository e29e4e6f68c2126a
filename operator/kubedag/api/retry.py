"""When and how soon a failed stage attempt is tried again."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from kubedag.api._base import ApiModel
from kubedag.contract import PERMANENT_EXIT_CODES


class RetryStrategy(StrEnum):
    """How the delay grows between attempts."""

    EXPONENTIAL = "exponential"
    LINEAR = "linear"
    FIXED = "fixed"


class RetryPolicy(ApiModel):
    """Retries of a failed stage. Each attempt is a new Job, so a retry starts from a clean pod."""

    limit: int = Field(
        default=0,
        ge=0,
        le=100,
        description="How many times a failed attempt is retried (0: never). A stage runs at "
        "most limit + 1 times.",
    )
    strategy: RetryStrategy = Field(
        default=RetryStrategy.EXPONENTIAL,
        description="Delay growth: `exponential` (initialDelaySeconds * factor^(n-1)), `linear` "
        "(initialDelaySeconds * n) or `fixed` (always initialDelaySeconds).",
    )
    initial_delay_seconds: int = Field(
        default=10, ge=0, le=86400, description="Delay before the first retry, in seconds."
    )
    factor: float = Field(
        default=2.0, ge=1.0, le=10.0, description="Growth factor of the exponential strategy."
    )
    max_delay_seconds: int = Field(
        default=600, ge=0, le=86400, description="Upper bound of any delay, in seconds."
    )
    retryable_exit_codes: list[int] = Field(
        default_factory=list,
        max_length=32,
        description="Exit codes that may be retried. Empty: every non-zero code except the "
        "permanent ones (64 misconfigured stage, 65 bad input, 66 outputs too large).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    def is_retryable(self, exit_code: int | None) -> bool:
        """Whether an attempt that ended with this code may be retried (limit aside).

        A missing exit code (pod evicted, node lost, deadline) is an infrastructure failure,
        the kind of error retries exist for.
        """
        if exit_code == 0:
            return False
        if exit_code is None:
            return True
        if self.retryable_exit_codes:
            return exit_code in self.retryable_exit_codes
        return exit_code not in PERMANENT_EXIT_CODES

    def delay_seconds(self, retry_number: int) -> float:
        """Seconds to wait before retry number `retry_number` (1 for the first retry)."""
        n = max(retry_number, 1)
        if self.strategy is RetryStrategy.FIXED:
            delay = float(self.initial_delay_seconds)
        elif self.strategy is RetryStrategy.LINEAR:
            delay = float(self.initial_delay_seconds * n)
        else:
            # Cap the exponent so a large retry number cannot overflow a float.
            delay = self.initial_delay_seconds * self.factor ** min(n - 1, 64)
        return min(delay, float(self.max_delay_seconds))

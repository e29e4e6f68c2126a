"""The kubedag API (group kubedag.io, version v1alpha1): the single source of truth for the CRDs.

Python code uses snake_case attributes; JSON/YAML use camelCase. Serialise for the API server
with `to_k8s`, which drops unset fields.
"""

from kubedag.api._base import ApiModel, to_k8s
from kubedag.api.breaker import (
    BreakerState,
    BreakerThresholds,
    CircuitBreaker,
    CircuitBreakerSpec,
    CircuitBreakerStatus,
    ForcedState,
    StageBreaker,
)
from kubedag.api.cache import (
    RunCacheMode,
    StageCache,
    StageCacheEntry,
    StageCacheEntrySpec,
    StageCacheStatus,
)
from kubedag.api.conditions import (
    CONDITION_SUCCEEDED,
    CONDITION_VALID,
    Condition,
    ConditionStatus,
    find_condition,
    set_condition,
)
from kubedag.api.params import ParamSpec, ParamType, matches_param_type
from kubedag.api.pipeline import Pipeline, PipelineDefaults, PipelineSpec, PipelineStatus
from kubedag.api.resources import DEFAULT_GPU_RESOURCE, Resources, Toleration
from kubedag.api.retry import RetryPolicy, RetryStrategy
from kubedag.api.run import PipelineRef, PipelineRun, PipelineRunSpec
from kubedag.api.stage import EnvVar, Fallback, FanOut, OutputSpec, Stage, StageType
from kubedag.api.status import (
    FallbackCheckpoint,
    FanOutStatus,
    PipelineRunStatus,
    ResourceUsage,
    RunPhase,
    RunProgress,
    StageCheckpoint,
    StagePhase,
)
from kubedag.api.workspace import (
    AccessMode,
    ClaimReference,
    ClaimSpec,
    VolumeClaimTemplate,
    Workspace,
    WorkspaceStatus,
)

__all__ = [
    "CONDITION_SUCCEEDED",
    "CONDITION_VALID",
    "DEFAULT_GPU_RESOURCE",
    "AccessMode",
    "ApiModel",
    "BreakerState",
    "BreakerThresholds",
    "CircuitBreaker",
    "CircuitBreakerSpec",
    "CircuitBreakerStatus",
    "ClaimReference",
    "ClaimSpec",
    "Condition",
    "ConditionStatus",
    "EnvVar",
    "Fallback",
    "FallbackCheckpoint",
    "FanOut",
    "FanOutStatus",
    "ForcedState",
    "OutputSpec",
    "ParamSpec",
    "ParamType",
    "Pipeline",
    "PipelineDefaults",
    "PipelineRef",
    "PipelineRun",
    "PipelineRunSpec",
    "PipelineRunStatus",
    "PipelineSpec",
    "PipelineStatus",
    "ResourceUsage",
    "Resources",
    "RetryPolicy",
    "RetryStrategy",
    "RunCacheMode",
    "RunPhase",
    "RunProgress",
    "Stage",
    "StageBreaker",
    "StageCache",
    "StageCacheEntry",
    "StageCacheEntrySpec",
    "StageCacheStatus",
    "StageCheckpoint",
    "StagePhase",
    "StageType",
    "Toleration",
    "VolumeClaimTemplate",
    "Workspace",
    "WorkspaceStatus",
    "find_condition",
    "matches_param_type",
    "set_condition",
    "to_k8s",
]

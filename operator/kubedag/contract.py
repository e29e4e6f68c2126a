"""What the operator and the worker agree on: names that cross the pod boundary.

Both sides import this module, so an env var or annotation cannot be renamed on one side only.
It holds plain constants and must stay free of imports from the rest of the package.
"""

from typing import Final

API_GROUP: Final = "kubedag.io"
API_VERSION: Final = "v1alpha1"

# --- Environment the operator gives a stage's container -------------------------------------
# Both from the downward API, only in pods with a ServiceAccount: the worker patches its own pod.
ENV_NAMESPACE: Final = "KUBEDAG_NAMESPACE"
ENV_POD_NAME: Final = "KUBEDAG_POD_NAME"
ENV_RUN: Final = "KUBEDAG_RUN"
ENV_STAGE: Final = "KUBEDAG_STAGE"
ENV_ATTEMPT: Final = "KUBEDAG_ATTEMPT"
ENV_PROCESSOR: Final = "KUBEDAG_PROCESSOR"  # "module:function"
# Set by the SDK's `Pipeline.task` on a processor function: {parameter name: upstream stage}.
# The worker passes each such stage's outputs (from ENV_INPUTS) under that parameter's name.
PROCESSOR_INPUTS_ATTRIBUTE: Final = "__kubedag_inputs__"
ENV_PARAMS: Final = "KUBEDAG_PARAMS"  # JSON object: the run's resolved params
ENV_INPUTS: Final = "KUBEDAG_INPUTS"  # JSON object: {upstream stage: its outputs}
ENV_WORKSPACE: Final = "KUBEDAG_WORKSPACE"  # a directory shared by the run's stages
# JSON list: a processor stage's `args` (a command stage gets them as its argv instead).
ENV_ARGS: Final = "KUBEDAG_ARGS"
ENV_FANOUT_ITEMS: Final = "KUBEDAG_FANOUT_ITEMS"  # JSON list of all items of a fan-out stage
ENV_FANOUT_BATCH_SIZE: Final = "KUBEDAG_FANOUT_BATCH_SIZE"
# Set by Kubernetes itself for Indexed Jobs; the worker picks its batch of items with it.
ENV_COMPLETION_INDEX: Final = "JOB_COMPLETION_INDEX"

# --- Pod annotations -------------------------------------------------------------------------
# The worker patches its own Pod with its latest progress (JSON: fraction, message, time), so it
# needs no rights on the PipelineRun; the operator folds it into the run's status.
ANNOTATION_PROGRESS: Final = f"{API_GROUP}/progress"

# --- Termination message ---------------------------------------------------------------------
# The worker writes one JSON object: {"outputs": {...}, "usage": {...}, "error": "..."}.
TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT: Final = 4096  # bytes; the kubelet truncates beyond this
ENV_TERMINATION_MESSAGE_PATH: Final = "KUBEDAG_TERMINATION_MESSAGE_PATH"  # overrides the path

# --- Exit codes: what a failed attempt says about retrying -----------------------------------
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1  # an unexpected exception: retried by the default policy
EXIT_PERMANENT: Final = 65  # bad input or a bug in the stage (EX_DATAERR): never retried by default
EXIT_OUTPUT_TOO_LARGE: Final = 66  # outputs do not fit the termination message: permanent
EXIT_USAGE: Final = 64  # the stage is misconfigured (EX_USAGE): permanent
EXIT_RETRYABLE: Final = 75  # a transient error, timeout, connection (EX_TEMPFAIL)
PERMANENT_EXIT_CODES: Final = frozenset({EXIT_USAGE, EXIT_PERMANENT, EXIT_OUTPUT_TOO_LARGE})

# --- Labels on everything kubedag creates ----------------------------------------------------
LABEL_RUN: Final = f"{API_GROUP}/run"
LABEL_STAGE: Final = f"{API_GROUP}/stage"
LABEL_ATTEMPT: Final = f"{API_GROUP}/attempt"
LABEL_PIPELINE: Final = f"{API_GROUP}/pipeline"

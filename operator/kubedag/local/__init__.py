"""Local runs: the operator's own decision core (`kubedag.core.decide`) driving local processes.

A local run is a PipelineRun whose stages run as `kubedag-worker` processes on this machine
instead of Jobs on a cluster, under the same environment contract (`kubedag.contract`).
What the run ignores (resources, GPUs, node selectors, images...) is logged at its start and
listed in `LocalRun.ignored`.
"""

from kubedag.local.ignored import ignored_settings
from kubedag.local.run import LocalRun, default_worker_command, run_local

__all__ = ["LocalRun", "default_worker_command", "ignored_settings", "run_local"]

"""Local runs: the operator's own decision core (`kubedag.core.decide`) driving local processes.

A local run is a PipelineRun whose stages run as `kubedag-worker` processes on this machine
instead of Jobs on a cluster, under the same environment contract (`kubedag.contract`).
"""

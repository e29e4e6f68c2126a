"""Talking to a cluster through the kubeconfig: submit runs, read, watch and steer them.

No extra server: everything is a Kubernetes API call on the Pipeline and PipelineRun resources.
The SDK's `Pipeline.submit()` and the `kubedag` CLI share this room, so a run looks the same
whichever front end started it.

    client = Client()                       # kubectl's kubeconfig, context and namespace
    run = client.create_run(pipeline_run)   # or client.run("@latest")
    result = run.wait(timeout=600)          # RunResult: phase, stages, outputs, exit_code
"""

from kubedag.client.client import LATEST, Client
from kubedag.client.errors import ClientError, ConflictError, NotFoundError
from kubedag.client.handle import RunHandle
from kubedag.client.logs import LogLine
from kubedag.core.runview import RunResult, StageResult

__all__ = [
    "LATEST",
    "Client",
    "ClientError",
    "ConflictError",
    "LogLine",
    "NotFoundError",
    "RunHandle",
    "RunResult",
    "StageResult",
]

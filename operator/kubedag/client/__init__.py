"""Talking to a cluster through the kubeconfig: submit runs, read, watch and steer them.

No extra server: everything is a Kubernetes API call on the Pipeline and PipelineRun resources.
The SDK's `Pipeline.submit()` and the `kubedag` CLI share this room, so a run looks the same
whichever front end started it.
"""

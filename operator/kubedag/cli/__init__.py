"""The `kubedag` command line (also installed as `kubectl-kubedag`), built on the SDK."""

"""kubedag benchmarks: `python -m bench` starts its own control plane and measures the operator
against a floor (a bare script that creates each Job the moment its dependencies' pods end)."""

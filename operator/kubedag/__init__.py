"""kubedag: a Kubernetes-native pipeline engine (Pipelines of stages run as Jobs)."""

__version__ = "0.1.0"
__all__ = ["__version__"]

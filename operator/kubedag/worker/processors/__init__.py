"""Built-in processors shipped in the worker image (``kubedag.worker.processors.<module>:<fn>``)."""

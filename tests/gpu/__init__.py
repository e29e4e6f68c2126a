"""The real-GPU check of the worker's GPU usage report (not part of `make test`: see README.md)."""

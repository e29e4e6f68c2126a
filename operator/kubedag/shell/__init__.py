"""The operator's outer shell: kopf handlers, caches, the work queue and every API call.

Nothing here decides anything; decisions live in :mod:`kubedag.core` (``decide``).
"""

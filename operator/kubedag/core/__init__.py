"""Pure decision logic: the stage graph, expressions and run planning, free of kopf and clients.

Modules are imported by name (`kubedag.core.dag`, `kubedag.core.expressions`, ...) so that
using one does not load the others' dependencies.
"""

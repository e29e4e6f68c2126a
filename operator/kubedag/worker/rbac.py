"""The RBAC a worker's ServiceAccount needs, for the Helm chart to render into a Role.

The worker only patches its own Pod's progress annotation. RBAC cannot name "the caller's own
pod" (resourceNames are fixed), so the Role is namespaced and limited to get/patch on pods.
"""

from typing import Any, Final

WORKER_POD_RULES: Final[list[dict[str, Any]]] = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]},
]

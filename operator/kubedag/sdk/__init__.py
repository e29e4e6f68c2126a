"""The Python SDK: write a pipeline in Python, check it offline, run it locally or submit it.

It builds the same pydantic models the CRDs are generated from (`kubedag.api`) and validates
with the same core the operator uses (`kubedag.core.validation`): no second object model.
"""

"""Settings for the whole suite.

Hypothesis fails an example that takes longer than its deadline (200 ms by default). That is a
timed assertion, and on a busy two-core machine (CI, or `make test` beside other work) a pure
property test tripped it now and then (test_mergepatch). Speed is measured by `make bench`
against a baseline, so property tests check properties only.
"""

from hypothesis import settings

settings.register_profile("kubedag", deadline=None)
settings.load_profile("kubedag")

"""``python -m kubedag.worker``: the same as the ``kubedag-worker`` console script."""

import sys

from kubedag.worker.cli import main

sys.exit(main())

"""A processor module that fails on import, as one with a missing dependency would."""

raise ImportError("no module named 'leftpad'")

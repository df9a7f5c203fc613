"""shelfscan edge: bundle loading, preprocessing, TFLite runtime and the on-device agent.

This package must import on devices without TensorFlow; keep this file free of heavy imports
so ``shelfscan-agent --help`` is instant.
"""

# The package's one version: pyproject.toml reads it from here (``[tool.setuptools.dynamic]``), so
# ``shelfscan-agent --version`` is the same installed or run from a checkout (``python -m edge.cli``).
__version__ = "0.1.0"

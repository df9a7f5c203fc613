"""shelfscan edge: bundle loading, preprocessing, TFLite runtime and the on-device agent.

This package must import on devices without TensorFlow; keep this file free of heavy imports
so ``shelfscan-agent --help`` is instant.
"""

__version__ = "0.1.0"

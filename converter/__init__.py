"""shelfscan converter (workstation, TensorFlow)."""

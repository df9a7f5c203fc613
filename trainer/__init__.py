"""shelfscan trainer (workstation, TensorFlow)."""

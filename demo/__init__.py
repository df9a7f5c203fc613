"""``make demo``: the whole shelfscan pipeline on generated (or real) data, offline."""

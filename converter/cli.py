"""``shelfscan-convert``: Keras model to validated TFLite bundles (workstation, TensorFlow)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Placeholder until the converter lands: says so plainly instead of pretending to convert."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print("usage: shelfscan-convert ...\n\nThe converter is not implemented yet (tracked in the converter issue).")
        return 0
    print(
        "shelfscan-convert: error: the converter is not implemented yet (tracked in the converter issue)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())

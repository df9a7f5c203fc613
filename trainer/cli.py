"""``shelfscan-train``: transfer learning on product photos (workstation, TensorFlow)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Placeholder until the trainer lands: says so plainly instead of pretending to train."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print("usage: shelfscan-train ...\n\nThe trainer is not implemented yet (tracked in the trainer issue).")
        return 0
    print("shelfscan-train: error: the trainer is not implemented yet (tracked in the trainer issue)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

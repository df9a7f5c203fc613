"""The argparse pieces every ``shelfscan-agent`` subcommand shares: model, preprocessing and delegate options.

They live apart from :mod:`edge.cli` (which builds the parser and dispatches) so the ``*_cli`` modules
can import them without importing the module that imports them back. Nothing here imports a
``*_cli`` module, and the heavy modules (runtime, OpenCV) only inside functions: ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from edge.errors import ShelfscanError

if TYPE_CHECKING:
    from edge.delegates import DelegateSpec
    from edge.runtime import Classifier
    from edge.watch import BrokerURL

Handler = Callable[[argparse.Namespace], int]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (``prog: error: ...``) and exit 2, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (threads, counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0 (a std, a scale)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number above 0")
    return value


def fraction(text: str) -> float:
    """An argparse type: a share in ``(0, 1]`` (a crop fraction)."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def add_model_command(
    sub: Any, name: str, help: str, description: str, *, paths_help: str, detector: bool = False
) -> argparse.ArgumentParser:
    """The start of every subcommand that runs one model over image paths (``classify``, ``detect``):
    the parser, its ``PATH`` arguments (``+`` for a classifier; a detector may take them from ``--truth``)
    and the model options, so both commands spell them alike."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description)
    p.add_argument("paths", nargs="*" if detector else "+", metavar="PATH", help=paths_help)
    add_model_args(p, detector=detector)
    return p


def add_model_args(p: argparse.ArgumentParser, detector: bool = False) -> None:
    """``--bundle DIR`` or ``--model F [--labels F]``, ``--threads``, a delegate; for classifiers also the
    preprocessing overrides for bare models (a detector adds its own, with ``resize`` stretch)."""
    if detector:
        src = p.add_argument_group("model (a detect bundle, or a bare detector .tflite)")
        src.add_argument("--bundle", metavar="DIR", help="detect bundle directory")
        src.add_argument("--model", metavar="FILE", help="bare .tflite: centernet or TFLite post-processing outputs")
        src.add_argument("--labels", metavar="FILE", help="labels for --model class ids (optional)")
    else:
        src = p.add_argument_group("model (a bundle, or a bare .tflite with labels)")
        src.add_argument("--bundle", metavar="DIR", help="bundle directory (model.tflite, labels.txt, manifest.json)")
        src.add_argument("--model", metavar="FILE", help="bare .tflite model (needs --labels)")
        src.add_argument("--labels", metavar="FILE", help="labels file for --model, one label per line")
    src.add_argument(
        "--threads", type=positive_int, metavar="N", help="interpreter threads (default: cores, at most 4)"
    )
    add_delegate_args(p)
    if not detector:
        add_preprocess_args(p)


def add_delegate_args(p: argparse.ArgumentParser) -> None:
    """``--delegate LIB`` and ``--delegate-option KEY=VALUE``: run the model on an accelerator (model.delegate)."""
    p.add_argument(
        "--delegate", metavar="LIB", help="external TFLite delegate library, e.g. libedgetpu.so.1 (Coral Edge TPU)"
    )
    p.add_argument(
        "--delegate-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option for the delegate library (repeatable), e.g. device=usb",
    )


def delegate_from_args(args: argparse.Namespace, default: DelegateSpec | None = None) -> DelegateSpec | None:
    """The delegate that ``add_delegate_args`` options name; ``default`` (the configuration's) when none is given."""
    from edge.delegates import DelegateSpec, parse_options

    options = parse_options(args.delegate_option)
    if args.delegate:
        return DelegateSpec(args.delegate, options)
    if options:
        raise ShelfscanError("--delegate-option needs --delegate LIB")
    return default


def add_preprocess_args(p: argparse.ArgumentParser, resize_default: str = "center_crop") -> None:
    """Preprocessing overrides for bare models; a bundle carries its own."""
    pre = p.add_argument_group("preprocessing for bare models (bundles carry their own)")
    pre.add_argument(
        "--normalization",
        choices=["minus_one_to_one", "zero_to_one", "raw"],
        help="float input range (default: inferred from input quantization, else [-1, 1])",
    )
    pre.add_argument("--mean", type=float, nargs="+", metavar="M", help="per-channel mean on 0..255 (1 or 3 values)")
    pre.add_argument(
        "--std", type=positive_float, nargs="+", metavar="S", help="per-channel std on 0..255 (1 or 3 values)"
    )
    pre.add_argument("--resize", choices=["center_crop", "stretch"], help=f"resize policy (default {resize_default})")
    pre.add_argument(
        "--crop-fraction", type=fraction, metavar="F", help="keep this fraction of the centre crop, in (0, 1]"
    )
    pre.add_argument("--color-order", choices=["RGB", "BGR"], help="model channel order (default RGB)")


def open_classifier(args: argparse.Namespace) -> Classifier:
    """Build a classifier from parsed ``add_model_args`` options, with one-line usage errors."""
    from edge.runtime import Classifier

    if args.bundle and args.model:
        raise ShelfscanError("give either --bundle or --model/--labels, not both")
    delegate = delegate_from_args(args)
    if args.bundle:
        reject_bare_options(args)
        return Classifier.from_bundle(args.bundle, args.threads, delegate=delegate)
    if not args.model or not args.labels:
        raise ShelfscanError("no model: pass --bundle DIR, or --model FILE with --labels FILE")
    return Classifier.from_files(args.model, args.labels, args.threads, delegate, **preprocess_overrides(args))


BARE_OPTIONS = ("labels", "normalization", "mean", "std", "resize", "crop_fraction", "color_order")


def reject_bare_options(args: argparse.Namespace) -> None:
    """A bundle carries its labels and preprocessing: options for bare models are an error with one, not ignored."""
    given = [f"--{name.replace('_', '-')}" for name in BARE_OPTIONS if getattr(args, name, None) not in (None, [])]
    if given:
        raise ShelfscanError(
            f"{', '.join(given)}: only for a bare --model; a bundle carries its own labels and preprocessing"
        )


def preprocess_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``PreprocessSpec`` fields set by ``add_preprocess_args`` options (unset ones are ``None``)."""
    from edge.preprocess import NORMALIZATIONS

    overrides: dict[str, Any] = {
        "resize": args.resize,
        "crop_fraction": args.crop_fraction,
        "color_order": args.color_order,
    }
    if args.normalization:
        mean, std = NORMALIZATIONS[args.normalization]
        overrides |= {"mean": (mean,) * 3, "std": (std,) * 3}
    for name in ("mean", "std"):
        values = getattr(args, name)
        if values:
            if len(values) not in (1, 3):
                raise ShelfscanError(f"--{name} takes 1 or 3 values, got {len(values)}")
            overrides[name] = tuple(values * 3 if len(values) == 1 else values)
    return overrides


def add_broker_args(p: argparse.ArgumentParser) -> None:
    """``--broker URL``, ``--protocol`` and ``--ca``: how ``watch`` and ``shelfmap --device`` reach the broker."""
    p.add_argument(
        "--broker",
        default="mqtt://localhost:1883",
        metavar="URL",
        help="mqtt://[user@]host[:port] or mqtts://... (default mqtt://localhost:1883); the password "
        "comes from SHELFSCAN_MQTT_PASSWORD unless the URL has one",
    )
    p.add_argument(
        "--protocol",
        choices=["3.1.1", "5"],
        default="3.1.1",
        help="MQTT version (default 3.1.1: every broker speaks it)",
    )
    p.add_argument(
        "--ca", metavar="PEM", help="mqtts://: the CA that signed the broker's certificate (default: the system's CAs)"
    )
    p.add_argument("--cert", metavar="PEM", help="mqtts://: client certificate, for brokers that require one")
    p.add_argument("--key", metavar="PEM", help="mqtts://: the client certificate's private key")


def broker_from_args(args: argparse.Namespace) -> BrokerURL:
    """The broker that ``add_broker_args`` options name (one-line errors for a bad URL or CA file)."""
    from edge.watch import parse_broker_url

    return parse_broker_url(args.broker, args.protocol, args.ca, args.cert, args.key)


def finish_results(doc: dict[str, Any], command: str, as_json: bool) -> int:
    """The end of a command over image paths: each skipped file named on stderr (one line each), the JSON
    document printed with ``--json``, and the exit status: 1 when something was skipped, else 0."""
    errors = [r for r in doc["results"] if "error" in r]
    for r in errors:
        print(f"shelfscan-agent {command}: skipped: {r['error']}", file=sys.stderr)
    if as_json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 1 if errors else 0

"""``shelfscan-convert publish BUNDLE --broker URL --device ID | --group NAME | --fleet``: a model rollout.

Puts the signed bundle on the broker as one retained archive
(``<prefix>/_bundles/<name>/<version>``, or names an https URL that serves the same archive) and
sets the retained *desired model* for a device, a group or the whole fleet (topics in
``edge.rollout``). Agents with ``model.trusted_keys`` fetch it, verify it, run it through a
canary and report each step as a ``model`` message; a robot that is offline picks the retained
messages up when it returns. ``--clear`` removes a desired model (agents keep what they run).
No TensorFlow: this runs wherever the bundles are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.cli_args import OneLineParser, add_broker_args, broker_from_args
from edge.errors import ShelfscanError
from edge.logsetup import add_verbosity_help, configure_logging, pop_verbosity


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="shelfscan-convert publish", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", nargs="?", help="a signed bundle directory (shelfscan-convert --sign-key)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", help="one device id")
    target.add_argument("--group", help="every device with this name in device.groups")
    target.add_argument("--fleet", action="store_true", help="every device under --prefix")
    p.add_argument("--prefix", default="shelfscan", help="topic prefix of the devices (device.prefix)")
    p.add_argument(
        "--role",
        choices=["auto", "classifier", "detector"],
        default="auto",
        help="which model it replaces (default: from the bundle's task)",
    )
    p.add_argument(
        "--url",
        metavar="HTTPS_URL",
        help="serve the archive from here instead of the broker (write it with --archive first); verified the same way",
    )
    p.add_argument("--archive", metavar="FILE", help="also write the archive to FILE (for --url)")
    p.add_argument("--clear", action="store_true", help="remove the desired model for the target (no BUNDLE)")
    p.add_argument("--json", action="store_true", help="print what was published as JSON")
    add_broker_args(p)
    add_verbosity_help(p)
    return p


def topic_for(prefix: str, role: str, device: str | None, group: str | None) -> str:
    """The desired-model topic of a target (the first, second or last of ``edge.rollout.desired_topics``)."""
    if device:
        return f"{prefix}/{device}/desired/{role}"
    if group:
        return f"{prefix}/_group/{group}/desired/{role}"
    return f"{prefix}/_fleet/desired/{role}"


def desired_document(bundle: Path, role: str, archive: bytes, prefix: str, url: str | None) -> dict[str, Any]:
    from edge.bundle import load_bundle
    from edge.bundle_archive import sha256_hex
    from edge.messages import rfc3339
    from edge.rollout import archive_topic

    m = load_bundle(bundle).manifest
    doc: dict[str, Any] = {
        "schema": "shelfscan.desired_model",
        "schema_version": 1,
        "role": role,
        "name": m.name,
        "version": m.version,
        "archive_sha256": sha256_hex(archive),
        "archive_bytes": len(archive),
        "published": rfc3339(),
    }
    if url:
        doc["url"] = url
    else:
        doc["archive_topic"] = archive_topic(prefix, m.name, m.version)
    return doc


def publish(args: argparse.Namespace) -> int:
    from edge.bundle import load_bundle
    from edge.bundle_archive import pack_bundle
    from edge.watch import connect

    if args.url and not args.url.startswith("https://"):
        raise ShelfscanError(f"--url {args.url}: agents fetch only https:// URLs")
    role = args.role if args.role != "auto" else "classifier"
    messages: list[tuple[str, bytes]] = []
    if args.clear:
        if args.bundle:
            raise ShelfscanError("--clear takes no BUNDLE")
        doc: dict[str, Any] = {"cleared": True}
    else:
        if not args.bundle:
            raise ShelfscanError("need BUNDLE (or --clear)")
        bundle = Path(args.bundle)
        loaded = load_bundle(bundle)  # the same checks an agent makes, before anything is published
        if not (bundle / "signature.json").is_file():
            raise ShelfscanError(
                f"{bundle}: unsigned bundle: agents take only signed ones (shelfscan-convert "
                "--sign-key, or edge.signing)"
            )
        if args.role == "auto":
            role = "detector" if loaded.manifest.task == "detect" else "classifier"
        archive = pack_bundle(bundle)
        doc = desired_document(bundle, role, archive, args.prefix, args.url)
        if args.archive:
            Path(args.archive).write_bytes(archive)
        if not args.url:
            messages.append((doc["archive_topic"], archive))
    desired = topic_for(args.prefix, role, args.device, args.group)
    messages.append((desired, b"" if args.clear else json.dumps(doc).encode()))
    url = broker_from_args(args)
    client = connect(url, f"shelfscan-publish-{int(time.time() * 1000) % 10**9}", [], lambda *_: None)
    try:
        deadline = time.monotonic() + 30
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not client.is_connected():
            raise ShelfscanError(f"no connection to broker {url.host}:{url.port} within 30 s")
        for topic, payload in messages:  # the archive before the desired model that names it
            info = client.publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(timeout=max(1.0, deadline - time.monotonic()))
            if not info.is_published():
                raise ShelfscanError(f"broker did not acknowledge {topic} (is the message over its size limit?)")
    finally:
        client.disconnect()
        client.loop_stop()
    doc |= {"desired_topic": desired}
    if args.json:
        print(json.dumps(doc, indent=2))
    elif args.clear:
        print(f"cleared the desired {role} at {desired}")
    else:
        where = args.url or doc["archive_topic"]
        print(
            f"published {doc['name']} {doc['version']} ({role}, {doc['archive_bytes'] / 1e6:.2f} MB, sha256 "
            f"{doc['archive_sha256'][:16]}...) at {where}\ndesired {role}: {desired}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    verbosity, rest = pop_verbosity(sys.argv[2:] if argv is None else argv)
    configure_logging(verbosity)
    try:
        return publish(build_parser().parse_args(rest))
    except ShelfscanError as exc:
        print(f"shelfscan-convert publish: error: {exc}", file=sys.stderr)
        return 2

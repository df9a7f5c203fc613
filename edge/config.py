"""The agent's one configuration model (TOML), in the spirit of Frigate's ``config/``.

Unknown keys are rejected with the key and the file named, every field is described (the
descriptions become ``shelfscan-agent config --example`` and docs/configuration.md), and
secrets come from the environment, never from the file.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, PositiveFloat, ValidationError, model_validator
from pydantic.fields import FieldInfo

from edge.bounds import BelowOne, Inside, Overlap, Port, Share
from edge.compat import tomllib
from edge.config_base import Section as _Section
from edge.config_fleet import EvidenceConfig, HomeAssistantConfig, LiveConfig, MetricsConfig, RolloutConfig
from edge.delegates import DelegateSpec
from edge.errors import ShelfscanError


class DeviceConfig(_Section):
    id: str = Field(
        default_factory=socket.gethostname,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="Device id: topic level and MQTT client id; default: the host name.",
    )
    prefix: str = Field("shelfscan", description="Topic prefix: messages go to <prefix>/<device id>/...")
    state_dir: Path = Field(Path("/var/lib/shelfscan"), description="Where the outbox and sequence counter live.")
    groups: list[str] = Field(
        default_factory=list, description="Rollout groups this device belongs to (shelfscan-convert publish --group)."
    )

    @model_validator(mode="after")
    def _plain_groups(self) -> DeviceConfig:
        bad = [g for g in self.groups if not re.fullmatch(r"[A-Za-z0-9_.\-]+", g)]
        if bad:
            raise ValueError(f"device.groups: {bad[0]!r} is not a plain name (letters, digits, _ . -)")
        return self


class ModelConfig(_Section):
    bundle: Path = Field(
        description="Classifier bundle directory (or a 'current' symlink to one); watched for changes."
    )
    detector: Path | None = Field(
        None,
        description="Facing detector bundle (task detect) for inference.pipeline = detect_classify; watched "
        "for changes like bundle.",
    )
    threads: int | None = Field(None, ge=1, le=64, description="Interpreter threads (default: cores, at most 4).")
    trusted_keys: list[Path] = Field(
        default_factory=list, description="ed25519 public keys (PEM); when set, unsigned bundles are refused."
    )
    watch_interval_s: float = Field(5.0, gt=0, description="How often the bundle path is checked for a new version.")
    delegate: str | None = Field(
        None,
        description="External TFLite delegate library (name or path), e.g. libedgetpu.so.1 for a Coral Edge TPU; "
        "the ops it supports run on its accelerator (bundle and detector). Unset: the CPU (XNNPACK).",
    )
    delegate_options: dict[str, str] = Field(
        default_factory=dict,
        description='Options passed to the delegate library, e.g. {device = "usb"} for the Edge TPU.',
    )

    @model_validator(mode="after")
    def _options_need_delegate(self) -> ModelConfig:
        if self.delegate_options and not self.delegate:
            raise ValueError("model.delegate_options needs model.delegate (the delegate library)")
        return self

    def delegate_spec(self) -> DelegateSpec | None:
        """The configured external delegate, or None for the CPU."""
        return DelegateSpec(self.delegate, dict(self.delegate_options)) if self.delegate else None


class SourceConfig(_Section):
    kind: Literal["camera", "url", "video", "folder", "picamera2"] = Field(description="Where frames come from.")
    camera: int | str | None = Field(
        None, description="Camera index (0) or device path (/dev/video0); picamera2: the camera number (default 0)."
    )
    url: str | None = Field(None, description="RTSP or HTTP stream URL.")
    path: Path | None = Field(None, description="Video file or image folder.")
    loop: bool = Field(False, description="Video: start again at the end instead of stopping.")
    fps: float | None = Field(
        None, gt=0, description="Pace frames at this rate (video default: the file's own frame rate)."
    )
    width: int | None = Field(None, gt=0, description="Camera capture width request (picamera2: with height).")
    height: int | None = Field(None, gt=0, description="Camera capture height request (picamera2: with width).")
    reopen_backoff_s: list[float] = Field(
        [1.0, 30.0], min_length=2, max_length=2, description="Reopen delay after a failure: [first, maximum] seconds."
    )
    stall_timeout_s: float = Field(
        10.0,
        gt=0,
        description="No frame for this long from an open source: its state becomes "
        "'stalled' (status message), 'ok' again with the next frame.",
    )

    @model_validator(mode="after")
    def _needs_location(self) -> SourceConfig:
        need = {"camera": "camera", "url": "url", "video": "path", "folder": "path"}.get(self.kind)
        if need and getattr(self, need) is None:
            raise ValueError(f"source kind {self.kind!r} needs '{need}'")
        if self.kind == "picamera2" and (self.width is None) != (self.height is None):
            raise ValueError("source kind 'picamera2' needs both width and height, or neither (640x480)")
        if self.kind == "picamera2" and self.camera is not None and not str(self.camera).isdigit():
            raise ValueError("source kind 'picamera2': camera is the camera number (0, 1, ...)")
        return self


class InferenceConfig(_Section):
    pipeline: Literal["classify", "detect_classify"] = Field(
        "classify",
        description="classify: the whole frame is one product view (sightings); detect_classify: detect every "
        "facing, classify each crop, track and count each physical facing once (needs model.detector).",
    )
    max_fps: float = Field(10.0, gt=0, description="Upper bound on frames processed per second.")
    score_threshold: Share = Field(0.5, description="Smoothed score a label needs to count as seen.")
    top_k: int = Field(3, ge=1, le=20, description="Labels kept per frame (classification messages).")
    smoothing_frames: int = Field(3, ge=1, le=100, description="Scores are averaged over this many frames.")
    min_frames: int = Field(3, ge=1, description="A run of at least this many confident frames is one sighting.")
    ignore_labels: list[str] = Field(default_factory=list, description="Labels never reported (e.g. 'background').")
    flip_crops: bool = Field(
        False,
        description="detect_classify: classify each facing crop as seen and mirrored and average the two "
        "scores. Measured on six Freiburg shelf passes (514 facings): labels right 56.0 -> 57.8 %; at 7 crops "
        "a frame, 2 threads, classify 16 -> 31 ms and 48 -> 28 frames/s (docs/tracking.md).",
    )


#: What an out-of-stock gap is (the composer's truth, trainer/shelf_composer.py): an empty span
#: between two facings of a row wider than this share of the row's median facing width.
GAP_SHARE = 0.7
#: The same rule applied to what the agent measures. Detected boxes next to an empty slot reach
#: into it: on shelf passes rendered from the demo's *val* photos (seeds 1 and 2) a gap's detected
#: span is 0.92 of its true span (mean of 12 gaps; min 0.81). So the agent compares measured
#: spans with 0.7 x 0.92 ~ 0.65 of the measured median width (docs/tracking.md).
MEASURED_GAP_SHARE = 0.65


class CountingConfig(_Section):
    """How the detect_classify pipeline tracks and counts facings (docs/tracking.md)."""

    line: Inside = Field(
        0.5,
        description="Counting line as a share of the frame width, perpendicular to the pan: a "
        "facing counts once, when its centre crosses it.",
    )
    match_iou: Overlap = Field(
        0.3,
        description="Shelf-coordinate IoU a box needs to continue a track (true matches score "
        "0.8-0.95, touching neighbours about 0).",
    )
    max_missed: int = Field(3, ge=0, description="Frames a track survives without a box (a missed detection or two).")
    min_hits: int = Field(
        3, ge=1, description="Boxes a track needs before it may count (a one-frame false box never does)."
    )
    min_votes: int = Field(2, ge=1, description="Crop classifications a facing needs for a label; fewer: 'unknown'.")
    settle_votes: int = Field(
        16,
        ge=1,
        description="Classifications that settle a facing's label; its facing message waits "
        "for them (or for its track to end).",
    )
    min_agreement: BelowOne = Field(
        0.5,
        description="The winning label needs more than this share of the track's "
        "score-weighted votes; otherwise the facing is reported as 'unknown'.",
    )
    row_gap: PositiveFloat = Field(
        0.5, description="A box farther than this many box heights from all rows starts one."
    )
    duplicate_iou: Overlap = Field(
        0.3,
        description="A new track overlapping an already counted facing of its row this much "
        "is that facing (stop-and-go, a reversing robot): never counted twice.",
    )
    gap_share: PositiveFloat = Field(
        MEASURED_GAP_SHARE,
        description="An empty span wider than this share of the row's median facing width "
        "is an out-of-stock gap (measured spans: the true-geometry rule 0.7 less the 8 % "
        "that detected boxes reach into an empty slot).",
    )
    count_edges: bool = Field(
        True,
        description="Also count facings the line never passes (behind it when the scan "
        "starts or the robot reverses, ahead of it when the scan ends).",
    )
    direction_px: float = Field(
        4.0, ge=0, description="Camera travel (pixels) that settles which way it moves (jitter below it does not)."
    )
    pose_topic: str | None = Field(
        None,
        description="Retained robot pose topic (JSON with x_m, optional y_m, aisle, "
        "heading); default <prefix>/<device id>/pose.",
    )


class ScanConfig(_Section):
    interval_s: float | None = Field(None, gt=0, description="Start a new scan every N seconds; unset: MQTT commands.")
    auto_start: bool = Field(True, description="Start a scan at startup (else wait for cmd/scan/start).")


class TLSConfig(_Section):
    ca: Path | None = Field(None, description="CA certificate (PEM) that signed the broker's certificate.")
    cert: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key: Path | None = Field(None, description="Client private key (PEM).")
    insecure: bool = Field(False, description="Skip broker host name verification (testing only).")


class MQTTConfig(_Section):
    host: str = Field("localhost", description="Broker host.")
    port: Port = Field(1883, description="Broker port (8883 for TLS).")
    protocol: Literal["3.1.1", "5"] = Field("5", description="MQTT protocol version.")
    username: str | None = Field(None, description="User name; the password comes from password_env.")
    password_env: str = Field("SHELFSCAN_MQTT_PASSWORD", description="Environment variable holding the password.")
    tls: TLSConfig | None = Field(None, description="TLS settings; absent: plain TCP.")
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive.")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of sighting, counts and status messages.")
    reconnect_backoff_s: list[float] = Field(
        [1.0, 30.0], min_length=2, max_length=2, description="Reconnect delay: [first, maximum] seconds."
    )

    def password(self) -> str | None:
        return os.environ.get(self.password_env)


class OutboxConfig(_Section):
    max_messages: int = Field(100_000, ge=10, description="Unsent messages kept; beyond that the oldest are dropped.")
    max_bytes: int = Field(64 * 2**20, ge=4096, description="Unsent bytes kept; beyond that the oldest are dropped.")


class PublishConfig(_Section):
    stats_interval_s: float = Field(10.0, gt=0, description="Seconds between stats messages (QoS 0).")
    classification: bool = Field(False, description="Also publish per-frame classifications (QoS 0).")
    classification_max_rate: float = Field(2.0, gt=0, description="At most this many classification messages/s.")


class AgentConfig(_Section):
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    model: ModelConfig
    source: SourceConfig
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    counting: CountingConfig = Field(default_factory=CountingConfig)
    scan: ScanConfig = Field(default_factory=ScanConfig)
    mqtt: MQTTConfig = Field(default_factory=MQTTConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)

    @model_validator(mode="after")
    def _pipeline_models(self) -> AgentConfig:
        if self.inference.pipeline == "detect_classify" and self.model.detector is None:
            raise ValueError("inference.pipeline detect_classify needs model.detector (a detect bundle)")
        return self


def validation_problems(exc: ValidationError, path: str | Path) -> list[str]:
    """Every problem pydantic found, one line each, naming the file and the key."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key '{where}'")
        elif err["type"] == "missing":
            lines.append(f"{path}: missing required key '{where}'")
        else:
            lines.append(f"{path}: {where}: {err['msg'].removeprefix('Value error, ')}")
    return lines


def parse_config(data: dict[str, Any], path: str | Path = "<config>") -> AgentConfig:
    """The validated configuration; the first problem (and how many more) as a :class:`ShelfscanError`."""
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc, path)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ShelfscanError(problems[0] + more) from None


def read_config_data(path: str | Path) -> dict[str, Any]:
    """The TOML table of a configuration file, with one-line errors for a missing, unreadable or bad file."""
    path = Path(path)
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        return data
    except FileNotFoundError:
        raise ShelfscanError(f"{path}: configuration file not found") from None
    except IsADirectoryError:
        raise ShelfscanError(f"{path}: is a folder, not a configuration file") from None
    except PermissionError:
        raise ShelfscanError(f"{path}: not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise ShelfscanError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ShelfscanError(f"{path}: not valid TOML ({exc})") from None


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate a TOML file; every error is one line naming the file and the key."""
    return parse_config(read_config_data(path), path)


def example_toml() -> str:
    """A fully commented example, generated from the field descriptions."""
    sample: dict[str, dict[str, Any]] = {
        "model": {"bundle": "/var/lib/shelfscan/bundles/current"},
        "source": {"kind": "camera", "camera": 0},
    }
    lines = ["# shelfscan-agent configuration (TOML). Secrets come from the environment.", ""]
    for name, field in AgentConfig.model_fields.items():
        section = _section_model(field)
        lines.append(f"[{name}]")
        for key, sub in section.model_fields.items():
            lines.append(f"# {sub.description}")
            value = sample.get(name, {}).get(key)
            if sub.default_factory is socket.gethostname:
                # not baked in: an example copied to many SD cards must not give them all one id
                lines.append(f"# {key} = (default: this machine's host name, read when the agent starts)")
                continue
            if value is None and not sub.is_required():
                default = sub.get_default(call_default_factory=True)
                if default is None:
                    lines.append(f"# {key} =")
                    continue
                value = default
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _section_model(field: FieldInfo) -> type[BaseModel]:
    """The model of one ``[section]`` of :class:`AgentConfig`: every field there is a table (a model)."""
    section = field.annotation
    assert isinstance(section, type) and issubclass(section, BaseModel), f"{section} is not a config section"
    return section


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, BaseModel):
        return "{}"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def reference_markdown() -> str:
    """docs/configuration.md, generated from the model (a test keeps the file current)."""
    lines = [
        "# Agent configuration reference",
        "",
        "Generated from `edge/config.py` (`shelfscan-agent config --reference > docs/configuration.md`); "
        "`shelfscan-agent config --example` prints a commented example, `config --check FILE` checks one as far as "
        "the agent's start goes (every schema problem, bundles loaded and verified, source opened once, TLS files, "
        "state_dir), one line per problem. "
        "Unknown keys are errors. Secrets come from the environment (`mqtt.password_env`).",
        "",
    ]
    for name, field in AgentConfig.model_fields.items():
        section = _section_model(field)
        required = " (required)" if field.is_required() else ""
        lines += [f"## [{name}]{required}", "", "| key | type | default | description |", "|---|---|---|---|"]
        for key, sub in section.model_fields.items():
            if sub.is_required():
                default = "required"
            elif key == "id":
                default = "host name"
            else:
                value = sub.get_default(call_default_factory=True)
                default = "none" if value is None else _toml_value(str(value) if isinstance(value, Path) else value)
            ann = sub.annotation
            kind = getattr(ann, "__name__", None) if isinstance(ann, type) else None
            kind = kind or str(ann).replace("typing.", "").replace("pathlib.", "").replace("edge.config.", "")
            text = str(sub.description).replace("<", "&lt;").replace(">", "&gt;")
            lines.append(f"| `{key}` | {kind.replace(' | ', ' or ')} | `{default}` | {text} |")
        lines.append("")
    return "\n".join(lines)

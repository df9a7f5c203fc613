"""The optional live page on the robot: what an installer needs to aim the camera.

``http://<live.host>:<live.port>/`` shows the latest camera frame with the detections and labels
drawn (``/frame.jpg``, reloaded by a few lines of script about twice a second), the current
scan's counts, the model and fps (``/state.json``), and the last shelf map (``/shelfmap``,
drawn by ``shelfscan-agent shelfmap``'s renderer). Standard library only: a
``ThreadingHTTPServer`` on a daemon thread. Frames are drawn and encoded here, on request, at
most ``live.max_fps`` times a second whatever the number of viewers; the frame loop only keeps
a reference (:class:`~edge.live_state.LiveState`).

Bound to loopback unless configured; any other address needs a password (the environment
variable ``live.password_env``), checked with HTTP Basic auth.
"""

from __future__ import annotations

import base64
import hmac
import html
import ipaddress
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from edge.config_fleet import LiveConfig
from edge.errors import ShelfscanError
from edge.live_frame_image import draw, to_jpeg
from edge.live_state import LiveState
from edge.shelfmap_cli import lay_out, to_html

log = logging.getLogger(__name__)

#: The page's background; the browser test looks for it.
BACKGROUND = "#1d2733"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(cfg: LiveConfig) -> None:
    """A live page on a non-loopback address needs a password: refuse to start without one (one line)."""
    if cfg.enabled and not is_loopback(cfg.host) and cfg.password() is None:
        raise ShelfscanError(
            f"live page: host {cfg.host} is not loopback, so the page needs a password: set the "
            f"environment variable {cfg.password_env} (or bind live.host to 127.0.0.1)"
        )


class FrameEncoder:
    """The latest frame as a JPEG, encoded at most ``max_fps`` times a second and shared by every viewer."""

    def __init__(self, state: LiveState, max_fps: float, max_width: int) -> None:
        self.state, self.min_gap, self.max_width = state, 1.0 / max_fps, max_width
        self._lock = threading.Lock()
        self._jpeg = to_jpeg(placeholder())
        self._index = -1
        self._encoded_at = -1e9
        self.encodes = 0

    def jpeg(self) -> bytes:
        with self._lock:  # one encode at a time; viewers arriving meanwhile get its result
            frame = self.state.wait_frame(timeout=1.0)  # a page just opened: the next frame
            now = self.state.clock()
            if frame is not None and frame.index != self._index and now - self._encoded_at >= self.min_gap:
                self._jpeg = to_jpeg(draw(frame, self.max_width))
                self._index, self._encoded_at = frame.index, now
                self.encodes += 1
            return self._jpeg


def placeholder() -> np.ndarray:
    """Shown until the first frame arrives (a grey 4:3 picture)."""
    return np.full((240, 320, 3), 96, np.uint8)


class LivePage:
    """The HTTP server of the live page and what its handlers share."""

    def __init__(self, state: LiveState, cfg: LiveConfig, device: str) -> None:
        check_exposure(cfg)
        self.state, self.device = state, device
        self.password = cfg.password()
        self.encoder = FrameEncoder(state, cfg.max_fps, cfg.max_width)
        handler = type("LiveHandler", (LiveHandler,), {"page": self})
        try:
            self.server = ThreadingHTTPServer((cfg.host, cfg.port), handler)
        except OSError as exc:
            raise ShelfscanError(f"live page: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="live-page", daemon=True)
        self._thread.start()
        auth = "password required" if self.password else "no password"
        log.info("live page on http://%s:%d/ (%s)", cfg.host, self.port, auth)

    def authorized(self, header: str | None) -> bool:
        if self.password is None:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            _user, _, given = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(given.encode(), self.password.encode())

    def state_doc(self) -> dict[str, Any]:
        snap = self.state.snapshot
        return {
            "device": self.device,
            "mode": snap.mode,
            "models": snap.models,
            "scan_id": snap.scan_id,
            "fps": round(self.state.fps(), 2),
            "frames": self.state.agent.frames_done,
            **snap.counts,
            "has_shelfmap": bool(snap.shelfmap and snap.shelfmap.get("rows")),
        }

    def shelfmap_html(self) -> str | None:
        snap = self.state.snapshot
        if not snap.shelfmap or not snap.shelfmap.get("rows"):
            return None
        doc = {**snap.counts, "scan_id": snap.scan_id or "", **snap.shelfmap}
        return to_html(lay_out(doc), doc)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LiveHandler(BaseHTTPRequestHandler):
    page: LivePage
    server_version = "shelfscan-live"

    def do_GET(self) -> None:
        if not self.page.authorized(self.headers.get("Authorization")):
            self.send_response(HTTPStatus.UNAUTHORIZED)
            self.send_header("WWW-Authenticate", 'Basic realm="shelfscan live", charset="UTF-8"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        page, path = self.page, self.path.split("?", 1)[0]
        page.state.watch()
        if path == "/":
            self._send(page_html(page.state_doc()).encode(), "text/html; charset=utf-8")
        elif path == "/frame.jpg":
            self._send(page.encoder.jpeg(), "image/jpeg")
        elif path == "/state.json":
            self._send(json.dumps(page.state_doc()).encode(), "application/json")
        elif path == "/shelfmap" and (doc := page.shelfmap_html()) is not None:
            self._send(doc.encode(), "text/html; charset=utf-8")
        else:
            self._send(b"not found\n", "text/plain", HTTPStatus.NOT_FOUND)

    def _send(self, body: bytes, kind: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("live page: " + format, *args)


def counts_rows(doc: dict[str, Any]) -> str:
    counts = doc.get("counts") or {}
    if not counts:
        return "<tr><td colspan='2'>nothing counted yet</td></tr>"
    return "".join(f"<tr><td>{html.escape(str(k))}</td><td class='n'>{int(v)}</td></tr>" for k, v in counts.items())


def summary_line(doc: dict[str, Any]) -> str:
    models = " · ".join(
        f"{html.escape(r)}: {html.escape(m.get('name', ''))} {html.escape(m.get('version', ''))}"
        for r, m in sorted(doc.get("models", {}).items())
    )
    extra = "".join(f" · {k} {doc[k]}" for k in ("facings", "gaps", "unknown") if k in doc)
    scan = html.escape(doc.get("scan_id") or "no scan")
    return f"{html.escape(doc['mode'])} · {models} · <b id='fps'>{doc['fps']:.1f}</b> fps · scan {scan}{extra}"


def page_html(doc: dict[str, Any]) -> str:
    """The page: rendered with the current counts (so it reads without script), refreshed by script."""
    shelfmap = "<iframe id='map' src='shelfmap'></iframe>" if doc["has_shelfmap"] else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>shelfscan live · {html.escape(doc["device"])}</title>
<style>
body {{ background: {BACKGROUND}; color: #e8edf2; font: 15px sans-serif; margin: 12px; }}
#frame {{ display: block; max-width: 100%; border: 2px solid #45556a; min-height: 120px; }}
table {{ border-collapse: collapse; margin-top: 8px; }} td {{ padding: 2px 10px; border-bottom: 1px solid #45556a; }}
td.n {{ text-align: right; }} #map {{ width: 100%; height: 360px; border: 0; background: #fff; margin-top: 8px; }}
</style></head><body>
<h2>{html.escape(doc["device"])}</h2>
<p id="summary">{summary_line(doc)}</p>
<img id="frame" src="frame.jpg" alt="live frame">
<table id="counts">{counts_rows(doc)}</table>
<div id="mapbox">{shelfmap}</div>
<script>
const img = document.getElementById("frame");
let n = 0;
img.onload = img.onerror = () => setTimeout(() => {{ img.src = "frame.jpg?n=" + (++n); }}, 700);
function esc(s) {{ return String(s).replace(/[&<>'"]/g, c => "&#" + c.charCodeAt(0) + ";"); }}
setInterval(async () => {{
  try {{
    const s = await (await fetch("state.json", {{cache: "no-store"}})).json();
    const rows = Object.entries(s.counts || {{}})
      .map(([k, v]) => `<tr><td>${{esc(k)}}</td><td class="n">${{v}}</td></tr>`);
    document.getElementById("counts").innerHTML = rows.join("") || "<tr><td colspan='2'>nothing counted yet</td></tr>";
    const models = Object.entries(s.models).map(([r, m]) => `${{esc(r)}}: ${{esc(m.name)}} ${{esc(m.version)}}`);
    const extra = ["facings", "gaps", "unknown"].filter(k => k in s).map(k => ` · ${{k}} ${{s[k]}}`).join("");
    document.getElementById("summary").innerHTML = `${{esc(s.mode)}} · ${{models.join(" · ")}} · ` +
      `<b id="fps">${{s.fps.toFixed(1)}}</b> fps · scan ${{esc(s.scan_id || "no scan")}}${{extra}}`;
    const box = document.getElementById("mapbox");
    if (s.has_shelfmap && !box.firstChild) box.innerHTML = "<iframe id='map' src='shelfmap'></iframe>";
    else if (s.has_shelfmap && Math.random() < 0.2) box.firstChild.src = "shelfmap?n=" + n;
  }} catch (e) {{}}
}}, 1000);
</script>
</body></html>
"""

"""MQTT link (paho-mqtt 2, VERSION2 callbacks), in the spirit of Frigate's ``comms/mqtt.py``.

- availability: retained ``online`` on every connect, ``offline`` as the last will, rebuilt
  before every (re)connect (paho's ``on_pre_connect``) so it carries the latest ``seq`` and time;
- ``cmd/#`` subscribed again on every connect (a broker restart forgets subscriptions);
- QoS >= 1 messages come from the durable outbox: a sender thread hands them to paho in order
  while connected, and each is deleted when its PUBACK arrives. Every message paho accepted
  (``MQTT_ERR_SUCCESS``, and ``MQTT_ERR_NO_CONN``, which paho has queued too) is recorded by its
  mid and never handed over again in this process: paho retransmits it after a reconnect. After
  a restart the outbox hands everything unacknowledged again;
- broker connect failures are logged with the reason and the next retry delay: a warning at the
  start of an outage, then at most every ``FAILURE_LOG_INTERVAL_S``;
- the inference loop only ever writes to the outbox, so publishing never blocks it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from edge.config import MQTTConfig
from edge.messages import Topics, rfc3339
from edge.mqtt_client import new_client
from edge.outbox import Outbox

log = logging.getLogger(__name__)
Handler = Callable[[str, bytes], None]
FAILURE_LOG_INTERVAL_S = 60.0


def next_retry_delay(failures: int, low: float, high: float) -> float:
    """paho's reconnect wait after ``failures`` consecutive failures: ``low``, doubled each time, at most ``high``."""
    return float(min(low * 2 ** max(failures - 1, 0), high))


class MqttLink:
    def __init__(
        self,
        cfg: MQTTConfig,
        device_id: str,
        topics: Topics,
        outbox: Outbox,
        on_command: Handler,
        on_connected: Callable[[], None],
        will: Callable[[], bytes],
        subscriptions: dict[str, Handler] | None = None,
    ) -> None:
        self.cfg, self.topics, self.outbox, self.on_command = cfg, topics, outbox, on_command
        self.subscriptions = dict(subscriptions or {})  # exact topic -> handler (e.g. homeassistant/status)
        self.on_connected = on_connected
        self.client = new_client(
            f"shelfscan-{device_id}", protocol=cfg.protocol, username=cfg.username, password=cfg.password(), tls=cfg.tls
        )
        self.make_will = will
        self.client.will_set(topics.status, will(), qos=1, retain=True)
        self.client.reconnect_delay_set(int(cfg.reconnect_backoff_s[0]), int(cfg.reconnect_backoff_s[1]))
        self.client.max_inflight_messages_set(20)
        self.client.on_pre_connect = self._refresh_will
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self._wake = threading.Condition()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox id (touched by the sender thread only)
        self._acked: deque[tuple[int, Any]] = deque()  # (mid, reason) from PUBACKs, for the sender thread
        self._handed = 0  # highest outbox id handed to paho in this process
        self._stop = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._failures = 0  # consecutive failed connects in this outage
        self._outage_since = 0.0
        self._last_reason = ""
        #: The last outage that ended (reason, failed attempts, seconds down, when it ended): the agent
        #: cannot report an outage while it lasts, so its next status says it (and `watch` shows it).
        self.last_outage: dict[str, Any] | None = None
        self._last_failure_log = 0.0

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        self._sender.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        self._sender.join(timeout=5)
        self.client.disconnect()
        self.client.loop_stop()
        self._apply_acks()  # PUBACKs that came after the sender stopped

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- callbacks (paho's network thread) ------------------------------------------------------
    def _refresh_will(self, client: Any, userdata: Any) -> None:
        """paho calls this before every connect and reconnect: the will is fixed at CONNECT, so build it now."""
        try:
            client.will_set(self.topics.status, self.make_will(), qos=1, retain=True)
        except Exception:  # an old will beats no connection
            log.exception("could not rebuild the last will; the previous one is used")

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        """The TCP/TLS connect failed. paho calls this inside its ``except OSError``, so the error is at hand."""
        exc = sys.exc_info()[1]
        self._connect_failed(f"{type(exc).__name__}: {exc}" if exc else "connection failed")

    def _connect_failed(self, reason: str) -> None:
        """A warning when an outage starts, then at most one per FAILURE_LOG_INTERVAL_S: never silent, no flood."""
        now = time.monotonic()
        self._failures += 1
        self._last_reason = reason
        if self._failures == 1:
            self._outage_since = now
        if self._failures == 1 or now - self._last_failure_log >= FAILURE_LOG_INTERVAL_S:
            self._last_failure_log = now
            low, high = (int(v) for v in self.cfg.reconnect_backoff_s)  # what reconnect_delay_set was given
            delay = next_retry_delay(self._failures, low, high)
            down = now - self._outage_since
            log.warning(
                "MQTT broker %s:%d unreachable: %s (attempt %d, down %.0f s); next retry in ~%.0f s",
                self.cfg.host,
                self.cfg.port,
                reason,
                self._failures,
                down,
                delay,
            )

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._connect_failed(f"broker refused the connection: {reason}")
            return
        if self._failures:
            down = time.monotonic() - self._outage_since
            log.info(
                "MQTT connected to %s:%d after %d failed attempts (%.0f s)",
                self.cfg.host,
                self.cfg.port,
                self._failures,
                down,
            )
            self.last_outage = {
                "reason": self._last_reason[:200],
                "attempts": self._failures,
                "down_s": round(down, 1),
                "ended": rfc3339(time.time()),
            }
        else:
            log.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)
        self._failures = 0
        client.subscribe(self.topics.commands, qos=1)
        for topic in list(self.subscriptions):  # the inference thread may add one meanwhile
            client.subscribe(topic, qos=1)
        self.connected.set()
        self.on_connected()
        self.wake()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); reconnecting", reason)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        """Only queue the ack: paho calls this holding its message lock, and the PUBACK can arrive before
        the sender has recorded the mid; the sender thread matches mids to rows in order."""
        self._acked.append((mid, reason))
        self.wake()

    def _apply_acks(self) -> None:
        while self._acked:
            mid, reason = self._acked.popleft()
            outbox_id = self._inflight.pop(mid, None)
            if outbox_id is None:  # a publish_now message (QoS 1 discovery), not an outbox row
                continue
            if getattr(reason, "is_failure", False):
                log.error("broker rejected message %d (%s): dropped", outbox_id, reason)
            self.outbox.ack(outbox_id)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        name = self.topics.command_name(message.topic)
        if name is not None:
            self.on_command(name, message.payload)
        elif message.topic in self.subscriptions:
            self.subscriptions[message.topic](message.topic, message.payload)

    # -- sending --------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                if not self._acked:
                    self._wake.wait(0.5)
            self._apply_acks()
            if not self.connected.is_set():
                continue
            for msg in self.outbox.pending(after_id=self._handed, limit=50):
                if not self.connected.is_set() or self._stop.is_set():
                    break
                info = self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
                if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    # NO_CONN: paho has queued it and sends it after the reconnect; handing it over
                    # again then would publish it twice
                    self._inflight[info.mid] = msg.id
                    self._handed = msg.id
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break
            self._apply_acks()

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Another exact topic, now and after every reconnect (the rollout's bundle archive)."""
        self.subscriptions[topic] = handler
        if self.connected.is_set():
            self.client.subscribe(topic, qos=1)

    def unsubscribe(self, topic: str) -> None:
        if self.subscriptions.pop(topic, None) is not None and self.connected.is_set():
            self.client.unsubscribe(topic)

    def publish_now(self, topic: str, payload: bytes, retain: bool = False, qos: int = 0) -> None:
        """Not persisted (stats, classifications, discovery): dropped while disconnected."""
        if self.connected.is_set():
            self.client.publish(topic, payload, qos=qos, retain=retain)

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (everything acknowledged) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.outbox.depth() == 0:
                return True
            self.wake()
            time.sleep(0.05)
        return self.outbox.depth() == 0

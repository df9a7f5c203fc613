"""MQTT link (paho-mqtt 2, VERSION2 callbacks), in the spirit of Frigate's ``comms/mqtt.py``.

- availability: retained ``online`` on every connect, ``offline`` as the last will;
- ``cmd/#`` subscribed again on every connect (a broker restart forgets subscriptions);
- QoS >= 1 messages come from the durable outbox: a sender thread hands them to paho in order
  while connected, and each is deleted when its PUBACK arrives. paho retransmits what was in
  flight after a reconnect; after a restart the outbox hands everything unacknowledged again;
- the inference loop only ever writes to the outbox, so publishing never blocks it.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import MQTTConfig
from edge.messages import Topics
from edge.outbox import Outbox

log = logging.getLogger(__name__)
Handler = Callable[[str, bytes], None]


class MqttLink:
    def __init__(self, cfg: MQTTConfig, device_id: str, topics: Topics, outbox: Outbox,
                 on_command: Handler, on_connected: Callable[[], None], will: bytes,
                 subscriptions: dict[str, Handler] | None = None) -> None:  # fmt: skip
        self.cfg, self.topics, self.outbox, self.on_command = cfg, topics, outbox, on_command
        self.subscriptions = dict(subscriptions or {})  # exact topic -> handler (e.g. homeassistant/status)
        self.on_connected = on_connected
        protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"shelfscan-{device_id}", protocol=protocol)
        self.client.will_set(topics.status, will, qos=1, retain=True)
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.password())
        if cfg.tls:
            self.client.tls_set(
                ca_certs=str(cfg.tls.ca) if cfg.tls.ca else None,
                certfile=str(cfg.tls.cert) if cfg.tls.cert else None,
                keyfile=str(cfg.tls.key) if cfg.tls.key else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            self.client.tls_insecure_set(cfg.tls.insecure)
        self.client.reconnect_delay_set(int(cfg.reconnect_backoff_s[0]), int(cfg.reconnect_backoff_s[1]))
        self.client.max_inflight_messages_set(20)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self._wake = threading.Condition()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox id
        self._handed = 0  # highest outbox id handed to paho in this process
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self.last_error = ""

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

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- callbacks (paho's network thread) ------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("MQTT %s:%d: %s (retrying with backoff)", self.cfg.host, self.cfg.port, self.last_error)
            return
        log.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)
        client.subscribe(self.topics.commands, qos=1)
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()
        self.on_connected()
        self.wake()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); reconnecting", reason)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            outbox_id = self._inflight.pop(mid, None)
        if outbox_id is None:
            return
        if getattr(reason, "is_failure", False):
            log.error("broker rejected message %d (%s): dropped", outbox_id, reason)
        self.outbox.ack(outbox_id)
        self.wake()

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
                self._wake.wait(0.5)
            if not self.connected.is_set():
                continue
            for msg in self.outbox.pending(after_id=self._handed, limit=50):
                if not self.connected.is_set() or self._stop.is_set():
                    break
                info = self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
                if info.rc == mqtt.MQTT_ERR_NO_CONN:
                    break
                with self._lock:
                    self._inflight[info.mid] = msg.id
                self._handed = msg.id

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

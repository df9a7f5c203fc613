"""The outbox -> paho hand-over against a real Mosquitto: exactly once, and a will rebuilt on every connect."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter

from edge.config import MQTTConfig
from edge.messages import Topics, envelope
from edge.mqtt import MqttLink, next_retry_delay
from edge.outbox import Outbox
from tests.mqtt_helpers import Subscriber


def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def make_link(port: int, outbox: Outbox) -> MqttLink:
    cfg = MQTTConfig(host="127.0.0.1", port=port, protocol="3.1.1", keepalive_s=5, reconnect_backoff_s=[1.0, 1.0])
    will = lambda: envelope("status", "r", outbox.last_seq(), None, state="offline")  # noqa: E731
    return MqttLink(cfg, "r", Topics("test", "r"), outbox, lambda *_: None, lambda: None, will)


def add(outbox: Outbox, link: MqttLink, n: int) -> None:
    for _ in range(n):
        outbox.add("test/r/sighting", lambda seq: json.dumps({"seq": seq}).encode(), 1, False)
    link.wake()


def test_a_message_paho_queued_without_connection_is_handed_over_once(tmp_path, broker):
    """paho returns MQTT_ERR_NO_CONN but keeps the QoS 1 message and sends it after the reconnect: the link must
    not hand that row over again. Nothing is in flight when the broker goes, so any duplicate is the link's."""
    sub = Subscriber(broker.port, "test/r/sighting", client_id="inventory")
    outbox = Outbox(tmp_path / "o.sqlite")
    link = make_link(broker.port, outbox)
    link.start()
    try:
        assert link.connected.wait(10)
        add(outbox, link, 3)
        assert link.flush(10)  # all acknowledged: nothing in flight
        # ... and delivered: a message the broker had not seen acknowledged by the subscriber when it stopped
        # comes again after the restart (the broker's duplicate, not the link's)
        assert sub.wait_for(lambda s: len(s.messages) == 3, 10)
        time.sleep(0.5)
        broker.stop()
        assert wait(lambda: not link.connected.is_set(), 10)
        add(outbox, link, 3)
        # the window between the socket dropping and paho's on_disconnect: the sender still thinks it is connected
        link.connected.set()
        link.wake()
        wait(lambda: link._handed == outbox.last_seq(), 3)  # the sender's position
        link.connected.clear()
        broker.start()
        assert link.flush(20), f"not acknowledged: {[p.id for p in outbox.pending()]}"
        assert sub.wait_for(lambda s: len(s.messages) >= 6, 10)
        time.sleep(1.5)  # a duplicate would come right behind
        seqs = [doc["seq"] for _, doc, _ in sub.messages]
        assert sorted(set(seqs)) == [1, 2, 3, 4, 5, 6], seqs
        assert Counter(seqs).most_common(1)[0][1] == 1, f"handed over twice: {seqs}"
    finally:
        link.stop()
        outbox.close()
        sub.close()


def test_the_will_is_rebuilt_on_every_connect(tmp_path, broker):
    """The will carries the seq of the latest (re)connect, not the one of the first start."""
    sub = Subscriber(broker.port, "test/r/status", client_id="watcher")
    outbox = Outbox(tmp_path / "o.sqlite")
    link = make_link(broker.port, outbox)
    link.start()
    try:
        assert link.connected.wait(10)
        broker.stop()
        assert wait(lambda: not link.connected.is_set(), 10)
        add(outbox, link, 4)  # taken while the broker is away
        broker.start()
        assert wait(link.connected.is_set, 15)
        assert link.flush(10)
        # Mosquitto sends the will when it shuts down too (that one says seq 0: built at the first connect)
        offline = lambda: [d for _, d, _ in sub.messages if d.get("state") == "offline"]  # noqa: E731
        time.sleep(0.5)
        before = len(offline())
        link.client.socket().shutdown(socket.SHUT_RDWR)  # an unclean drop: the broker sends the will
        assert sub.wait_for(lambda _: len(offline()) > before, 15)
        assert offline()[before]["seq"] == 4, offline()
    finally:
        link.stop()
        outbox.close()
        sub.close()


def test_next_retry_delay_doubles_up_to_the_maximum():
    assert [next_retry_delay(n, 1, 30) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]

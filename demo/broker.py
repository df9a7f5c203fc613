"""An embedded MQTT broker (amqtt, pure Python) for the demo when no ``MQTT_URL`` is given.

It runs as its own process (``python -m demo.broker PORT``) so the demo can stop it like any
other service it started. amqtt speaks MQTT 3.1.1, so the demo's agent is configured for
3.1.1; a real deployment uses Mosquitto (``deploy/mosquitto/``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    print(f"amqtt broker listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def start(port: int, timeout: float = 20.0) -> subprocess.Popen[bytes]:
    """Start the broker process and wait until it accepts connections."""
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "demo.broker", str(port)], stdout=subprocess.DEVNULL, cwd=repo)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the embedded broker exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the embedded broker did not listen on port {port} within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    # amqtt logs a client that connects and leaves without a packet (our readiness probe) as an error
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(serve(int(sys.argv[1])))

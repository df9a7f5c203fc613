"""One way to make a paho client from shelfscan settings: protocol, credentials, TLS.

The agent's link, ``watch``, ``shelfmap --device`` and ``bench --publish`` all connect to the
same brokers; each used to set the client up by hand (``watch`` with MQTT 3.1.1 fixed and a bare
``tls_set()`` that ignored the CA the agent was configured with).
"""

from __future__ import annotations

import ssl
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import TLSConfig

Protocol = Literal["3.1.1", "5"]


def new_client(
    client_id: str,
    *,
    protocol: Protocol = "5",
    username: str | None = None,
    password: str | None = None,
    tls: TLSConfig | None = None,
) -> mqtt.Client:
    """A paho client (VERSION2 callbacks) with credentials and TLS set, not yet connected.

    With ``tls`` the broker's certificate is verified (against ``tls.ca``, else the system's CAs),
    the client certificate is sent for mutual TLS, and ``tls.insecure`` skips only the host name
    check.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
    )
    if username:
        client.username_pw_set(username, password)
    if tls is not None:
        client.tls_set(
            ca_certs=str(tls.ca) if tls.ca else None,
            certfile=str(tls.cert) if tls.cert else None,
            keyfile=str(tls.key) if tls.key else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(tls.insecure)
    return client

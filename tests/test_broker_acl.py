"""The broker ACL README documents (mosquitto acl_file pattern lines), on a real mosquitto with
passwords: the gateway works under it (status out, its config and commands in, replies out),
and another gateway can neither read this gateway's configuration nor command it."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .remote_helpers import PASSWORD, STORE, running_daemon
from .web_helpers import wait_for

# README "Broker ACL": the gateway's MQTT user name is "<store>/<gateway>"
ACL = """\
user backend
topic readwrite shelfgate/#

pattern write shelfgate/v1/%u/events
pattern write shelfgate/v1/%u/status
pattern write shelfgate/v1/%u/replies
pattern read shelfgate/v1/%u/config
pattern read shelfgate/v1/%u/commands

user hb-neumuenster/gw-rc
topic read shelfgate/v1/hb-neumuenster/offers
user hb-neumuenster/gw-other
topic read shelfgate/v1/hb-neumuenster/offers
"""
BACKEND = ("backend", "backend-pw-91c2")
OTHER = (f"{STORE}/gw-other", "other-pw-44d1")


def test_the_documented_acl_confines_each_gateway_to_its_topics(tmp_path: Path) -> None:
    pw = tmp_path / "passwd"
    pw.touch()
    for user, secret in [(f"{STORE}/gw-rc", PASSWORD), BACKEND, OTHER]:
        subprocess.run(["mosquitto_passwd", "-b", str(pw), user, secret], check=True)
    (tmp_path / "acl").write_text(ACL)
    extra = f"password_file {pw}\nacl_file {tmp_path / 'acl'}"
    with running_daemon(tmp_path, broker_extra=extra, username=f"{STORE}/gw-rc",
                        backend_auth=BACKEND) as r:  # fmt: skip
        b = r.backend  # the daemon's first status arrived: it may write its status
        b.push_config(1, {"pipeline": {"min_dwell_s": 30.0}})
        b.status_where("config version 1 taken", lambda st: st["config"]["version"] == 1)
        assert b.reply(b.command("status"))["ok"]  # its commands in, its replies out
        # another gateway of the store, with its own credentials
        got: dict[str, bytes] = {}
        lock = threading.Lock()
        o = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        o.username_pw_set(*OTHER)

        def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            with lock:
                got[msg.topic] = bytes(msg.payload)

        o.on_message = on_message
        o.connect("127.0.0.1", r.broker.port)
        o.loop_start()
        try:
            b.c.publish(f"shelfgate/v1/{STORE}/gw-other/config", b'{"own": 1}', qos=1,
                        retain=True).wait_for_publish(5)  # fmt: skip
            o.subscribe([(f"{b.base}/config", 1), (f"shelfgate/v1/{STORE}/gw-other/config", 1)])
            # retained messages come in the order of the subscription: once its own has come,
            # this gateway's would have come before it, had the ACL allowed it
            wait_for("the other gateway's own config",
                     lambda: got.get(f"shelfgate/v1/{STORE}/gw-other/config"), 10.0)  # fmt: skip
            with lock:
                assert f"{b.base}/config" not in got, "read another gateway's configuration"
            # a command forged by the other gateway never reaches this one
            forged = orjson.dumps({"id": "forged", "command": "status"})
            o.publish(f"{b.base}/commands", forged, qos=1).wait_for_publish(5)
            real = b.command("status")
            assert b.reply(real)["ok"]
            assert "(id forged)" not in r.log() and f"(id {real})" in r.log()
            with b.lock:
                assert "forged" not in b.replies
        finally:
            o.loop_stop()
            o.disconnect()
        r.alive()

"""Commands on `<prefix>/<store>/<gateway>/commands` (QoS 1):
`{"id": "<unique>", "command": "reload" | "rescan" | "resend" | "status" | "diagnose", "args": {}}`;
the answer on `.../replies`: `{"id", "ok": true, "result": ...}` or `{"id", "ok": false, "error"}`.

A command is run once per id (QoS 1 may deliver it twice: the same answer is sent again). A
retained command is refused (it would run again at every connect). An answer larger than the
broker takes is refused with the reason; `diagnose` shortens its bundle to fit instead.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.mqtt.link import MqttLink
from positioning.errors import ShelfgateError

log = logging.getLogger(__name__)

COMMANDS = ("reload", "rescan", "resend", "status", "diagnose")
REMEMBERED = 256  # answers kept for a redelivered id

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class CommandError(Exception):
    """A command refused, with the reason (the reply's "error")."""


class CommandService:
    def __init__(
        self,
        link: MqttLink,
        replies: str,
        handlers: dict[str, Handler],
        max_bytes: Callable[[], int],
    ) -> None:
        self._link = link
        self._replies = replies
        self._handlers = handlers
        self._max_bytes = max_bytes
        self._answered: OrderedDict[str, bytes] = OrderedDict()

    async def on_message(self, payload: bytes, retained: bool) -> None:
        cid: Any = None
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError as e:
            self._send(_reply(None, error=f"not JSON: {e}"))
            return
        if isinstance(obj, dict):
            cid = obj.get("id")
        if not isinstance(cid, str) or not cid:
            self._send(_reply(None, error="id: expected a unique non-empty string"))
            return
        if cid in self._answered:
            self._send(self._answered[cid])
            return
        body = await self._answer(cid, obj, retained)
        self._answered[cid] = body
        while len(self._answered) > REMEMBERED:
            self._answered.popitem(last=False)
        self._send(body)

    async def _answer(self, cid: str, obj: dict[str, Any], retained: bool) -> bytes:
        command = obj.get("command")
        args = obj.get("args", {})
        if retained:
            return _reply(
                cid, error="a retained command is not run (it would run at every connect)"
            )
        if command not in self._handlers:
            return _reply(
                cid, error=f"command: expected one of {', '.join(COMMANDS)}, got {command!r}"
            )
        if not isinstance(args, dict):
            return _reply(cid, error="args: expected an object")
        log.info("command %s (id %s)", command, cid)
        try:
            result = await self._handlers[command](args)
        except (CommandError, ShelfgateError) as e:
            return _reply(cid, error=" ".join(str(e).splitlines()))
        except Exception as e:  # a command must never take the gateway down
            log.exception("command %s failed", command)
            return _reply(cid, error=f"failed: {type(e).__name__}: {e}")
        body = _reply(cid, result=result)
        if len(body) > self._max_bytes():
            return _reply(cid, error=f"the answer is {len(body)} bytes, more than the broker "
                          f"takes ({self._max_bytes()})")  # fmt: skip
        return body

    def _send(self, body: bytes) -> None:
        self._link.publish(self._replies, body, qos=1, retain=False)


def _reply(cid: str | None, result: Any = None, error: str | None = None) -> bytes:
    msg: dict[str, Any] = {"id": cid, "ok": error is None}
    if error is None:
        msg["result"] = result
    else:
        msg["error"] = error
    return orjson.dumps(msg, option=orjson.OPT_SERIALIZE_NUMPY)

"""The technician web app's HTTP server: aiohttp on the daemon's own event loop (no thread).

    GET /                 the app (floor map, tags, receivers): HTML, CSS and JS from package data
    GET /healthz          200 "ok" while healthy (no credentials)
    GET /metrics          Prometheus text
    GET /api/v1/state     the JSON snapshot (DESIGN.md)
    GET /api/v1/stream    server-sent events: `state` every second; with ?tag=<pseudonym> also
                          `tag` (that tag's last minutes) every TAG_EVERY_S
    GET /api/v1/tags/{p}  one tag's last minutes (what the stream's `tag` event carries)
    GET /api/v1/calibration            the calibration wizard's state (also in every `state` push)
    POST /api/v1/calibration/{action}  start {beacon, stand_s}, stand {zone}, stop {keep}, fit,
                          apply, discard (JSON bodies: a cross-site form cannot send one)

One tick a second samples the live state and serialises the stream's message once for every
client; a client that cannot keep up loses old messages, never grows a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from html import escape
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from gateway.config import WebConfig
from positioning.errors import InputError

from .auth import Credentials, bind_host, parse_listen
from .floor import floor_svg
from .metrics import CONTENT_TYPE, GatewayCollector, exposition, make_registry
from .state import LiveState
from .wizard import CalibrationWizard, WizardError

log = logging.getLogger(__name__)

TICK_S = 1.0
TAG_EVERY_S = 2.0
KEEPALIVE_S = 15.0
STATIC = {"app.js": "text/javascript", "wizard.js": "text/javascript", "app.css": "text/css"}

Health = Callable[[], Awaitable[str | None]]


class WebService:
    def __init__(
        self,
        cfg: WebConfig,
        state: LiveState,
        inflight: Callable[[], int],
        wizard: CalibrationWizard | None = None,
    ) -> None:
        assert cfg.listen is not None
        self.state = state
        self.wizard = wizard
        if wizard is not None:
            wizard.on_change = self._broadcast
        self.host, self.port = parse_listen(cfg.listen)
        self.creds = Credentials.from_config(cfg)
        self.ssl = _ssl_context(cfg)
        self.health: Health | None = None
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._message = b""
        self._registry = make_registry(
            GatewayCollector(state, inflight, lambda: len(self._clients))
        )
        self._index = _index_html(state)
        self._runner: web.AppRunner | None = None
        self.bound: tuple[str, int] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Listen (before the daemon reports ready: a taken port fails the start)."""
        app = web.Application(middlewares=[self._auth])
        app.add_routes(
            [
                web.get("/", self._page),
                web.get("/static/{name}", self._static),
                web.get("/healthz", self._healthz),
                web.get("/metrics", self._metrics),
                web.get("/api/v1/state", self._state),
                web.get("/api/v1/stream", self._stream),
                web.get("/api/v1/tags/{pseudonym}", self._tag),
                web.get("/api/v1/calibration", self._calibration),
                web.post("/api/v1/calibration/{action}", self._calibrate),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        host = bind_host(self.host, self.creds)
        site = web.TCPSite(self._runner, host, self.port, ssl_context=self.ssl)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            raise InputError(
                f"{host}:{self.port}", "web.listen", f"cannot listen ({e.strerror})"
            ) from None
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.bound = sockets[0].getsockname()[:2] if sockets else (host, self.port)
        scheme = "https" if self.ssl else "http"
        log.info("technician web app on %s://%s:%d/", scheme, *self.bound)
        await self.state.tick()

    async def run(self) -> None:
        """The tick; on cancellation, the streams end and the server closes."""
        try:
            while True:
                await asyncio.sleep(TICK_S)
                try:
                    await self.state.tick()
                    if self.wizard is not None:
                        self.wizard.tick()
                    if self._clients:
                        self._broadcast()
                except Exception:  # the web app must never take the gateway down
                    log.exception("web: live state update failed")
        finally:
            for q in self._clients:
                _offer(q, None)
            if self._runner is not None:
                await self._runner.cleanup()

    def _broadcast(self) -> None:
        st = self.state
        msg = {"now": round(st.pipeline.to_wall(st.pipeline.now()), 3), "state": st.snapshot()}
        msg["near"] = st.nearest()
        if self.wizard is not None:
            msg["calibration"] = self.wizard.status()
        self._message = b"event: state\ndata: " + orjson.dumps(msg) + b"\n\n"
        for q in self._clients:
            _offer(q, self._message)

    # ------------------------------------------------------------------ handlers
    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path != "/healthz" and not self.creds.accepts(
            request.headers.get("Authorization")
        ):
            return web.Response(
                status=401,
                text="credentials required (user technician, or a Bearer token)\n",
                headers={"WWW-Authenticate": 'Basic realm="shelfgate", charset="UTF-8"'},
            )
        return await handler(request)

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=self._index, content_type="text/html", headers=_NO_CACHE)

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        body = resources.files("gateway.web").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=STATIC[name], headers=_NO_CACHE)

    async def _healthz(self, request: web.Request) -> web.Response:
        reason = await self.health() if self.health is not None else None
        if reason is not None:
            return web.Response(status=503, text=f"unhealthy: {reason}\n")
        return web.Response(text="ok")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=exposition(self._registry), headers={"Content-Type": CONTENT_TYPE})

    async def _state(self, request: web.Request) -> web.Response:
        return _json(self.state.snapshot())

    async def _tag(self, request: web.Request) -> web.Response:
        detail = self.state.tag_detail(request.match_info["pseudonym"])
        if detail is None:
            raise web.HTTPNotFound(text="no such tag (tags are forgotten when unheard)")
        return _json(detail)

    async def _calibration(self, request: web.Request) -> web.Response:
        if self.wizard is None:
            raise web.HTTPNotFound(text="no calibration wizard in this gateway\n")
        self.wizard.watch()
        return _json(self.wizard.status())

    async def _calibrate(self, request: web.Request) -> web.Response:
        wz = self.wizard
        if wz is None:
            raise web.HTTPNotFound(text="no calibration wizard in this gateway\n")
        if request.content_type != "application/json":
            return web.Response(status=415, text="expected a JSON body (application/json)\n")
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            return web.Response(status=400, text="the body is not valid JSON\n")
        if not isinstance(body, dict):
            return web.Response(status=400, text="expected a JSON object\n")
        action = request.match_info["action"]
        try:
            if action == "start":
                beacon = body.get("beacon")
                stand_s = body.get("stand_s", 30.0)
                if beacon is not None and not isinstance(beacon, str):
                    raise WizardError("beacon: expected a tag's pseudonym or null (the loudest)")
                if not isinstance(stand_s, int | float) or isinstance(stand_s, bool):
                    raise WizardError("stand_s: expected seconds (a number)")
                wz.start(beacon, float(stand_s))
            elif action == "stand":
                zone = body.get("zone")
                if not isinstance(zone, str):
                    raise WizardError("zone: expected a zone id of the layout")
                wz.stand(zone)
            elif action == "stop":
                wz.stop_stand(bool(body.get("keep", True)))
            elif action == "fit":
                await wz.fit()
            elif action == "apply":
                wz.apply()
            elif action == "discard":
                wz.discard()
            else:
                raise web.HTTPNotFound(text="actions: start, stand, stop, fit, apply, discard\n")
        except WizardError as e:
            return web.Response(status=409, text=f"{e}\n")
        self._broadcast()  # every open app sees the step at once
        return _json(wz.status())

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        tag = request.query.get("tag")
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=2)
        self._clients.add(q)
        loop = asyncio.get_running_loop()
        next_tag = 0.0
        try:
            if not self._message:
                self._broadcast()
            await resp.write(self._message)
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        msg = await q.get()
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if msg is None:
                    break
                await resp.write(msg)
                if tag and loop.time() >= next_tag:
                    next_tag = loop.time() + TAG_EVERY_S
                    detail = self.state.tag_detail(tag)
                    body = orjson.dumps(detail or {"tag": tag, "gone": True})
                    await resp.write(b"event: tag\ndata: " + body + b"\n\n")
        except ConnectionResetError:  # the browser went away
            return resp
        finally:
            self._clients.discard(q)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp


_NO_CACHE = {"Cache-Control": "no-store"}


def _json(obj: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY),
        content_type="application/json",
        headers=_NO_CACHE,
    )


def _offer(q: asyncio.Queue[bytes | None], msg: bytes | None) -> None:
    """Newest wins: a slow client drops its oldest message."""
    if q.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            q.get_nowait()
    q.put_nowait(msg)


def _ssl_context(cfg: WebConfig) -> ssl.SSLContext | None:
    if cfg.cert_file is None or cfg.key_file is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    except (OSError, ssl.SSLError) as e:
        raise InputError(
            cfg.cert_file, "web.cert_file", f"cannot load the certificate ({e})"
        ) from None
    return ctx


def _index_html(state: LiveState) -> str:
    page = resources.files("gateway.web").joinpath("static", "index.html").read_text("utf-8")
    title = f"shelfgate · {state.identity.store} · {state.identity.gateway}"
    return page.replace("{{TITLE}}", escape(title)).replace("{{FLOOR}}", floor_svg(state.layout))

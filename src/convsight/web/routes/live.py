"""``/live``: the Live page, and ``/live/socket``: the one WebSocket each Live page opens.

The page sends frames (binary: a 4-byte big-endian frame number, then a JPEG) and settings
(text: JSON, ``live.LiveSettings``). The server keeps **only the newest frame** that is waiting:
a frame that arrives while another still waits replaces it and counts as dropped, so when the
model is slower than the camera the page sees recent frames, not a growing queue. Each answer
(``live.Frame.pack``) says how many frames were received and dropped. Frames stay in memory,
are never written to disk, and are bounded in size (here and by uvicorn's ``ws_max_size``).

``guard.Guard`` has already checked the handshake's Host, Origin and ``Sec-Fetch-Site``
(browsers do not apply the same-origin policy to WebSockets). At most ``MAX_SOCKETS`` pages are
live at once; more are closed with 1013 (try again later).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

import convsight

from ..guard import CSP
from ..live import MAX_FRAME_BYTES, NORMS, VIEWS, BadFrame, LiveEngine, LiveSettings
from .respond import explorer, jobs, layers, page, stored_syntheses

log = logging.getLogger("convsight.web")

MAX_SOCKETS = 8
MAX_TEXT = 4096  # a settings message is about 100 bytes
# The page plays a video file the user picks from a blob: URL; nothing else is loaded from it.
LIVE_CSP = CSP + "; media-src blob:"


def engine(request: Request | WebSocket) -> LiveEngine:
    return request.app.state.live


def live_page(request: Request) -> HTMLResponse:
    ex, live = explorer(request), engine(request)
    start = live.default_settings()
    response = page(request, "live.html", layers=live.layers(), start=start,
                    samples=list(ex.input_images.samples()), views=VIEWS, norms=NORMS,
                    input=list(ex.net.input_size), ratio=ex.net.resize_ratio,
                    max_bytes=MAX_FRAME_BYTES)
    response.headers["Content-Security-Policy"] = LIVE_CSP
    return response


def unit_info(request: WebSocket, layer: str, channel: int) -> dict[str, Any]:
    """What the atlas and the explorer hold for a unit: its top patches, its synthesis."""
    facets = stored_syntheses(request).facets(layer, channel)
    synth = facets[0].url if facets else None
    if synth is None and jobs(request).status(layer, channel)["state"] == "done":
        synth = f"/img/synth/{layer}/{channel}.png"
    return {"layer": layer, "channel": channel, "unit_url": f"/unit/{layer}/{channel}",
            "patches": [f"/img/patch/{layer}/{channel}/{rank}.jpg"
                        for rank in range(len(layers(request).hits(layer, channel)))],
            "synthesis": synth}


class Connection:
    """One page's socket: the receiving loop, a one-frame slot, frames computed one after the
    other on the engine's worker thread, and a sending task.

    The worker takes the next waiting frame itself as soon as it is done with one (the engine's
    ``worker`` queue is first in, first out, so the pages that share it take turns), and hands
    the packed answer to the event loop to send: the event loop, which may wait for a core while
    the browser draws, is never between two passes. At most ``MAX_UNSENT`` answers wait to be
    sent; the worker waits for the page beyond that."""

    MAX_UNSENT = 2

    def __init__(self, ws: WebSocket) -> None:
        self.ws, self.live = ws, engine(ws)
        self.settings: LiveSettings = self.live.default_settings()
        self.loop = asyncio.get_running_loop()
        self.lock = threading.Lock()  # the slot and the counts, shared with the worker thread
        self.waiting: bytes | None = None  # the newest frame not yet started
        self.scheduled = False  # a step is queued or running on the worker
        self.closed = False
        self.outbox: asyncio.Queue[bytes | str] = asyncio.Queue()
        self.unsent = 0
        self.received = self.dropped = self.done = 0

    async def run(self) -> None:
        sender = asyncio.create_task(self.send_answers())
        try:
            await self.send_settings()
            await self.receive()
        finally:
            with self.lock:
                self.closed, self.waiting = True, None
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                pass

    async def receive(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                if not await self.offer(message["bytes"]):
                    return
            elif message.get("text") is not None:
                await self.configure(message["text"])

    async def offer(self, data: bytes) -> bool:
        """Keep the frame as the newest (dropping the one still waiting); False: closed."""
        if len(data) > MAX_FRAME_BYTES + 4:
            await self.ws.close(code=1009, reason="frame too large")
            return False
        with self.lock:
            self.received += 1
            if self.waiting is not None:
                self.dropped += 1
            self.waiting = data
            self._schedule()
        return True

    def _schedule(self) -> None:
        """Claim the waiting frame and queue it on the worker, unless one is queued or being
        computed, or ``MAX_UNSENT`` answers wait to be sent (under ``lock``)."""
        if (self.scheduled or self.closed or self.waiting is None
                or self.unsent >= self.MAX_UNSENT):
            return
        data, self.waiting = self.waiting, None
        self.scheduled = True
        self.live.worker.submit(self.step, data)

    def step(self, data: bytes) -> None:
        """On the worker thread: compute a frame, claim the next waiting frame for the worker
        (before the answer can reach the page, whose next frame must not replace it), then
        hand the answer to the event loop."""
        message: bytes | str | None = None
        try:
            message = self.answer(data, self.settings)
        finally:
            with self.lock:
                self.scheduled = False
                if message is not None and not self.closed:
                    self.unsent += 1
                self._schedule()
                if message is not None and not self.closed:
                    try:
                        self.loop.call_soon_threadsafe(self.outbox.put_nowait, message)
                    except RuntimeError:  # the server's loop is gone: shutting down
                        self.closed = True

    def answer(self, data: bytes, settings: LiveSettings) -> bytes | str:
        """The packed answer to one frame, or an error message (JSON text) naming its number."""
        frame_id = int.from_bytes(data[:4], "big") if len(data) >= 4 else 0
        try:
            frame = self.live.process(data[4:], settings)
        except BadFrame as exc:
            return json.dumps({"type": "error", "id": frame_id, "message": str(exc)})
        except Exception:  # noqa: BLE001  the details go to the log, not to the page
            log.exception("live frame failed")
            return json.dumps({"type": "error", "id": frame_id, "message": "internal error"})
        with self.lock:
            self.done += 1
            frame.header.update(type="frame", id=frame_id, received=self.received,
                                dropped=self.dropped, done=self.done)
        return frame.pack()

    async def send_answers(self) -> None:
        while True:
            message = await self.outbox.get()
            if isinstance(message, str):
                await self.ws.send_text(message)
            else:
                await self.ws.send_bytes(message)
            with self.lock:
                self.unsent -= 1
                self._schedule()

    async def configure(self, text: str) -> None:
        try:
            if len(text) > MAX_TEXT:
                raise convsight.ConvsightError(f"a settings message has at most {MAX_TEXT} "
                                               "characters")
            try:
                data = json.loads(text)
            except ValueError:
                raise convsight.ConvsightError("settings must be JSON") from None
            self.settings = self.live.settings(data, self.settings)
        except convsight.ConvsightError as exc:
            await self.ws.send_json({"type": "error", "message": str(exc)})
            return
        await self.send_settings()

    async def send_settings(self) -> None:
        s = self.settings
        info = await run_in_threadpool(unit_info, self.ws, s.layer, s.unit)
        await self.ws.send_json({"type": "settings", "settings": s.as_dict(), "unit": info})


class Sockets:
    """How many Live pages are connected (at most ``MAX_SOCKETS``)."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def enter(self) -> bool:
        with self.lock:
            if self.count >= MAX_SOCKETS:
                return False
            self.count += 1
            return True

    def leave(self) -> None:
        with self.lock:
            self.count -= 1


async def live_socket(ws: WebSocket) -> None:
    sockets: Sockets = ws.app.state.live_sockets
    if not sockets.enter():
        await ws.close(code=1013, reason="too many live pages are open")
        return
    try:
        await ws.accept()
        await Connection(ws).run()
    except WebSocketDisconnect:
        pass
    finally:
        sockets.leave()


ROUTES = [
    Route("/live", live_page),
    WebSocketRoute("/live/socket", live_socket),
]

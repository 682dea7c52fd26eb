"""The explorer's HTTP connections: time limits on what clients send, and the security headers
on the answers uvicorn writes itself.

uvicorn (0.55, h11) waits for a request's headers and body as long as the client keeps sending
a byte now and then, so a few slow connections can hold the server's sockets for good (the
"slowloris" attack). ``protocol`` returns uvicorn's h11 protocol with two deadlines: a request's
headers must arrive within ``header_timeout`` seconds of the connection opening (or of the
previous answer, on a kept-alive connection), its body within ``body_timeout`` seconds more;
otherwise the connection is closed. The time the app takes to answer is not limited. uvicorn's
own 400 answer to a malformed request gets ``guard.SECURITY_HEADERS`` like every other answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .guard import SECURITY_HEADERS

HEADER_TIMEOUT = 10.0  # seconds for a request line and headers
BODY_TIMEOUT = 60.0  # seconds more for the body (an upload of 16 MiB at 2 Mbit/s)


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the deadlines of the module docstring."""

    header_timeout = HEADER_TIMEOUT
    body_timeout = BODY_TIMEOUT

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm(self.header_timeout, self._headers_due)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self.header_timeout, self._headers_due)  # the next request's headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm(None, None)
        super().connection_lost(exc)

    def _arm(self, seconds: float | None, check: Any) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, check) if seconds is not None else None

    def _ours(self) -> bool:
        """Whether this protocol still runs the connection (not closed, not upgraded)."""
        return not self.transport.is_closing() and self.transport.get_protocol() is self

    def _headers_due(self) -> None:
        if not self._ours():
            return
        if self.conn.their_state is h11.IDLE:  # no complete request line and headers yet
            self._drop("headers")
        elif self.conn.their_state is h11.SEND_BODY:
            self._arm(self.body_timeout, self._body_due)

    def _body_due(self) -> None:
        if self._ours() and self.conn.their_state is h11.SEND_BODY:
            self._drop("body")

    def _drop(self, part: str) -> None:
        self.logger.info("closing a connection that sent its request %s too slowly", part)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()  # the app's receive() now says http.disconnect
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, with the security headers."""
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"),
                   *SECURITY_HEADERS]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=msg.encode("ascii", "replace")), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def protocol(header_timeout: float = HEADER_TIMEOUT,
             body_timeout: float = BODY_TIMEOUT) -> type[TimedH11Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""
    if header_timeout == HEADER_TIMEOUT and body_timeout == BODY_TIMEOUT:
        return TimedH11Protocol
    return type("TimedH11Protocol", (TimedH11Protocol,),
                {"header_timeout": float(header_timeout), "body_timeout": float(body_timeout)})

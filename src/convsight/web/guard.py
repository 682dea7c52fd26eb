"""The explorer's outer wall: which requests it answers, and the headers on every answer.

The explorer is a local server that runs computations, and any web page the user opens can send
requests to it. This ASGI layer, outside everything else (also outside the 500 handler), keeps
other sites out:

- **Host**: DNS rebinding makes an attacker's name point at 127.0.0.1, so that their page becomes
  "same-origin" with the explorer. Every request must name the explorer by ``localhost``, a
  loopback address, the address the connection arrived on, or a name given in ``allowed_hosts``
  (``convsight serve --allow-host``); others get 400.
- **Writes** (any method but GET, HEAD and OPTIONS) must come from the explorer's own pages: a
  ``Sec-Fetch-Site`` other than ``same-origin`` or an ``Origin`` other than the one the request
  was sent to is refused (403), and the request must carry ``X-Convsight: 1`` (a header no other
  site can add without a CORS preflight, which the explorer never grants) or a matching
  ``Origin`` (the page's own form posted without script; browsers send ``Origin`` on every POST).
- **Reads** from other sites' pages (``Sec-Fetch-Site: cross-site`` or ``same-site``) are
  answered only when they are top-level navigations (a link) to an HTML page: ``<img>``,
  ``fetch``, frames, ``<object>`` and links to pictures, scores or the API get 403 before
  anything is computed. (The image page, which runs the network, shows a link to itself
  instead for such a visit: ``CROSS_SITE``.)
- **WebSockets** (the Live page's): the same Host check, and a foreign ``Origin`` or a
  ``Sec-Fetch-Site`` other than ``same-origin`` is refused (browsers apply no same-origin policy
  to WebSockets, so any page could otherwise open one).
- **Headers** on every response: a Content-Security-Policy that allows only the explorer's own
  scripts, styles and pictures and no framing, ``X-Content-Type-Options: nosniff``,
  ``X-Frame-Options: DENY`` and ``Referrer-Policy: same-origin``.

The checks follow the OWASP cheat sheets on CSRF (custom request headers, Origin checks, Fetch
Metadata) and on DNS rebinding (Host validation).
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable, Iterable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

WRITE_HEADER = "x-convsight"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
LOOPBACK = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# paths no other site may request, not even by a link: everything but the HTML pages
NOT_LINKED = ("/img/", "/api/", "/static/")
CROSS_SITE = ("cross-site", "same-site")  # Sec-Fetch-Site values of another site's page
_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::([0-9]{1,5}))?")  # matched whole


def cross_site(headers: dict[str, list[str]]) -> bool:
    """Whether the browser says the request comes from another site's page (another port of
    localhost is the same *site*, yet another origin: refused alike)."""
    return headers.get("sec-fetch-site", [""])[-1] in CROSS_SITE


def host_name(host: str) -> str | None:
    """The name or address in a ``Host`` value (``[::1]:8000`` -> ``::1``), lower case; None if
    it is not a valid host."""
    host = host.strip().lower()
    if host.count(":") > 1 and not host.startswith("["):  # a bare IPv6 address
        host = f"[{host}]"
    m = _HOST.fullmatch(host)
    if m is None:
        return None
    return m.group(1).strip("[]").rstrip(".")


def allowed_names(extra: Iterable[str] = ()) -> frozenset[str]:
    """Loopback names plus ``extra`` (``name`` or ``name:port``; the port is not compared)."""
    names = set(LOOPBACK)
    for item in extra:
        name = host_name(item)
        if not name:
            from ..errors import ConvsightError

            raise ConvsightError(f"--allow-host {item!r} is not a host name: use a name such as "
                                 "explorer.lan or an address such as 192.168.1.20")
        names.add(name)
    return frozenset(names)


def header_lists(scope: Scope) -> dict[str, list[str]]:
    """A request's headers by lower-case name, each with its values in order."""
    headers: dict[str, list[str]] = {}
    for name, value in scope.get("headers", []):
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return headers


class Guard:
    """ASGI middleware: refuse foreign hosts and cross-site writes; add the security headers."""

    def __init__(self, app: Callable[..., Awaitable[None]],
                 allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.names = allowed_names(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            refusal = self.socket_refusal(scope)
            if refusal is not None:  # closing before accepting: the handshake gets HTTP 403
                await send({"type": "websocket.close", "code": 1008, "reason": refusal})
                return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in have]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send_with_headers)
            return
        status, text = refusal
        body = (text + "\n").encode("utf-8")
        await send_with_headers({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode())]})
        await send_with_headers({"type": "http.response.body", "body": body})

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, message) when the request is refused, else None."""
        headers = header_lists(scope)
        problem = self.hosts_problem(headers, scope)
        if problem:
            return 400, problem
        if scope.get("method", "GET") in SAFE_METHODS:
            return self.embed_problem(headers, scope.get("path", ""))
        return self.write_problem(headers, headers["host"][0])

    def hosts_problem(self, headers: dict[str, list[str]], scope: Scope) -> str | None:
        """Why the request's Host header(s) are refused (exactly one, naming this explorer)."""
        hosts = headers.get("host", [])
        if len(hosts) != 1:
            return "send exactly one Host header"
        return self.host_problem(hosts[0], scope)

    @staticmethod
    def embed_problem(headers: dict[str, list[str]], path: str) -> tuple[int, str] | None:
        """Another site's page may link to the explorer's HTML pages (a top-level navigation)
        but not make it compute for it, as browsers say with ``Sec-Fetch-Site``, ``-Mode`` and
        ``-Dest``: requests that are not navigations (``<img>``, ``fetch``), frames, objects and
        embeds (navigations too) and any request for ``NOT_LINKED`` paths (pictures, scores,
        the API) are refused."""
        if not cross_site(headers):
            return None
        mode = headers.get("sec-fetch-mode", [""])[-1]
        dest = headers.get("sec-fetch-dest", [""])[-1]
        if mode != "navigate" or path.startswith(NOT_LINKED):
            return 403, "the explorer serves its pictures and data only to its own pages"
        if dest not in ("document", ""):
            return 403, ("other sites may link to the explorer's pages, not frame or embed "
                         f"them (Sec-Fetch-Dest: {dest[:20]})")
        return None

    def host_problem(self, host: str, scope: Scope) -> str | None:
        name = host_name(host)
        if name is None:
            return "the Host header is not a valid host name"
        server = scope.get("server") or ("", 0)
        if name in self.names or name == str(server[0]).lower():
            return None
        shown = host[:80].encode("ascii", "replace").decode()
        return (f"this explorer does not answer to the host {shown!r}: open it at "
                f"http://localhost:{server[1]}/ or start it with --allow-host {name[:80]}")

    def socket_refusal(self, scope: Scope) -> str | None:
        """Why a WebSocket handshake is refused, or None. Browsers let any page open a WebSocket
        to any server (no same-origin policy, no CORS), so the Origin they always send is checked
        here: it must be the explorer itself, as ``Sec-Fetch-Site`` must say ``same-origin``.
        Clients that send neither (scripts) are let in, as for other requests."""
        headers = header_lists(scope)
        problem = self.hosts_problem(headers, scope)
        if problem:
            return problem[:120]
        site = headers.get("sec-fetch-site", [])
        if site and site != ["same-origin"]:
            return "the explorer's sockets are for its own pages (Sec-Fetch-Site)"
        origins = headers.get("origin", [])
        host = headers["host"][0].lower()
        own = (f"http://{host}", f"https://{host}")
        if len(origins) > 1 or (origins and origins[0].lower() not in own):
            return "the explorer's sockets are for its own pages (Origin)"
        return None

    @staticmethod
    def write_problem(headers: dict[str, list[str]], host: str) -> tuple[int, str] | None:
        site = headers.get("sec-fetch-site", [])
        if site and site != ["same-origin"]:
            return 403, "the explorer takes changes only from its own pages (Sec-Fetch-Site)"
        origins = headers.get("origin", [])
        own = (f"http://{host.lower()}", f"https://{host.lower()}")
        if len(origins) > 1 or (origins and origins[0] not in own):
            return 403, "the explorer takes changes only from its own pages (Origin)"
        if headers.get(WRITE_HEADER) != ["1"] and not origins:
            return 403, ("send the header X-Convsight: 1 with changes (the explorer's pages do); "
                         "it keeps other web sites from making them")
        return None

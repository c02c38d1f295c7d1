"""The block explorer page a node serves at GET /explorer (docs/explorer.md).

Static files only (net/explorer/static: HTML, CSS and one script, no build step): the page
reads the chain through the public JSON-RPC (POST /) and subscriptions (GET /ws) like any
client, so it can show nothing a client could not read.  Served by default when the RPC
listens on loopback, off elsewhere unless the operator asks (node.py --explorer)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

STATIC = Path(__file__).resolve().parent / "static"
MODES = ("auto", "on", "off")
FILES = {"explorer.css": "text/css", "explorer.js": "text/javascript"}
# Nothing but the node itself: no inline script or style, no frames, no other origin.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}


@dataclass(frozen=True)
class Setting:
    """Whether the explorer is served, and why not where it is not (the 404's text)."""

    on: bool
    reason: str = ""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def setting(mode: str, rpc_host: str) -> Setting:
    """--explorer auto: on for a loopback RPC host only (the page is read-only, but a public
    node's operator should choose to publish it); on and off as said."""
    if mode not in MODES:
        raise ValueError(f"explorer mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "on" or (mode == "auto" and is_loopback(rpc_host)):
        return Setting(True)
    if mode == "off":
        return Setting(False, "the explorer is off on this node (--explorer off)")
    return Setting(False, f"the explorer is off: the RPC listens on {rpc_host}, not loopback "
                          "(start the node with --explorer on to serve it)")


def add_routes(app: web.Application, explorer: Setting, guarded: Any) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        if not explorer.on:
            return web.Response(text=explorer.reason + "\n", status=404)
        return web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html", charset="utf-8",
                            headers=HEADERS)

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not explorer.on:
            return web.Response(text=explorer.reason + "\n", status=404)
        if name not in FILES:  # a fixed list: no path from a request reaches the file system
            return web.Response(text=f"no explorer file {name!r}\n", status=404)
        return web.Response(body=(STATIC / name).read_bytes(), content_type=FILES[name], charset="utf-8",
                            headers=HEADERS)

    async def slash(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/explorer")

    app.router.add_get("/explorer", guarded(page))
    app.router.add_get("/explorer/", guarded(slash))
    app.router.add_get("/explorer/static/{name}", guarded(static))

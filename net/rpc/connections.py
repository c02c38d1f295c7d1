"""Connections counted against Limits, in all and per IP (-32005, HTTP 503 over them), and
closed when a client does not send a request's headers in time (slowloris)."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from net.rpc.errors import SERVER_BUSY
from net.rpc.jsonio import _dumps
from net.rpc.limits import Limits

log = logging.getLogger("gradchain.rpc")


class _Guard(asyncio.Protocol):
    """An aiohttp connection (inner) counted against Limits and closed when its client does
    not send a request's headers within header_timeout (slowloris)."""

    def __init__(self, conns: "_Connections", inner: asyncio.Protocol):
        self.conns, self.inner = conns, inner
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else ""
        why = self.conns.admit(self.ip)
        if why:
            body = _dumps({"jsonrpc": "2.0", "id": None, "error": {"code": SERVER_BUSY, "message": why}}).encode()
            transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            transport.close()
            return
        self.transport = transport
        self.conns.guards[transport] = self
        self.inner.connection_made(transport)
        self.arm()

    def arm(self) -> None:
        """Start the wait for the next request's headers."""
        self.disarm()
        self.timer = asyncio.get_running_loop().call_later(self.conns.limits.header_timeout, self._expire)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        log.info("rpc: closed a connection from %s: no request within %g s", self.ip, self.conns.limits.header_timeout)
        assert self.transport is not None
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.transport is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.transport is not None else None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self.disarm()
        self.conns.release(self.ip, self.transport)
        self.transport = None
        self.inner.connection_lost(exc)


@dataclass
class _Connections:
    """The open connections, in all and per IP."""

    limits: Limits
    per_ip: dict[str, int] = field(default_factory=dict)
    guards: dict[Any, _Guard] = field(default_factory=dict)

    def admit(self, ip: str) -> str | None:
        """Count a new connection from ip, or say why it is refused."""
        if len(self.guards) >= self.limits.max_connections:
            return f"server busy: {self.limits.max_connections} connections are open, the most it serves: retry later"
        if self.per_ip.get(ip, 0) >= self.limits.max_per_ip:
            return f"server busy: {self.limits.max_per_ip} connections from {ip} are open, the most per IP"
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        return None

    def release(self, ip: str, transport: Any) -> None:
        del self.guards[transport]
        self.per_ip[ip] -= 1
        if not self.per_ip[ip]:
            del self.per_ip[ip]

"""The listening sockets gan-serve opens before it loads any model, then hands to uvicorn.

A port another server holds is then a one-line error at once, not uvicorn's bind error after
every model has loaded and warmed up; and the sockets listen from the start, so no other server
can take the port during the warm-up (connections wait in the backlog). They are opened as
asyncio's create_server would: one per address the host resolves to, SO_REUSEADDR, IPv6 sockets
IPv6-only; port 0 picks a free port.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket

# Why the address might be unusable, in words for the one line gan-serve prints.
HINTS = {
    errno.EADDRINUSE: "is another server running? stop it or pass --port",
    errno.EACCES: "ports under 1024 need privileges: pass --port",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address: pass another --host",
}


class ListenError(Exception):
    """The address cannot be listened on; the message says which and why, in one line."""


def address(host: str, port: int) -> str:
    """host:port as it is written in a URL ([host]:port for an IPv6 address; * for every
    interface)."""
    return f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"


def listen(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Sockets bound to every address `host` resolves to (all interfaces when it is empty) and
    listening. With port 0 they all share the free port the first one got. Raises ListenError."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        reason = (e.strerror or str(e)).lower()
        raise ListenError(f"cannot listen on {address(host, port)}: {reason} (pass another --host)") from e
    sockets: list[socket.socket] = []
    failure: ListenError | None = None
    try:
        # getaddrinfo may name an address twice (localhost in /etc/hosts): bind each once.
        for family, kind, proto, sockaddr in dict.fromkeys((i[0], i[1], i[2], i[4]) for i in infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:  # a family this machine lacks (IPv6 turned off): asyncio skips it too
                continue
            sockets.append(sock)
            if port == 0 and len(sockets) > 1:  # one free port for all, not one each
                sockaddr = (sockaddr[0], sockets[0].getsockname()[1], *sockaddr[2:])
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    # Else the IPv6 wildcard would also take the IPv4 port the next socket binds.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(sockaddr)
                sock.listen(backlog)
            except OSError as e:
                reason = os.strerror(e.errno).lower() if e.errno else str(e)
                hint = f" ({HINTS[e.errno]})" if e.errno in HINTS else ""
                failure = ListenError(f"cannot listen on {address(host, port)}: {reason}{hint}")
                if e.errno != errno.EADDRNOTAVAIL:
                    raise failure from e
                # As asyncio does: an address of a family not enabled here is left out, unless
                # none is left (bpo-30945).
                sockets.pop().close()
        if not sockets:
            raise failure or ListenError(f"cannot listen on {address(host, port)}: no usable address")
    except BaseException:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        raise
    return sockets

"""Where ``runproc serve`` listens, and running it: ``--bind HOST:PORT`` read and checked
(loopback or not), the socket bound here (so a port in use is one line before anything
starts) and handed to uvicorn.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError

DEFAULT_PORT = 8480


@dataclass(frozen=True)
class Bind:
    host: str
    port: int

    def url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def __str__(self) -> str:
        return f"{self.url_host()}:{self.port}"


def _bad(text: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"--bind {text!r}: {message}")  # the CLI says "runproc: " before it


def parse_bind(text: str) -> Bind:
    """``HOST:PORT``, ``HOST`` (port 8480), ``[IPv6]:PORT``; port 0 picks a free one."""
    value = text.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise _bad(text, "expected [IPv6]:PORT, e.g. [::1]:8480")
        port_text = rest[1:] if rest else None
    elif value.count(":") > 1:
        raise _bad(text, "an IPv6 address goes in brackets: [::1]:8480")
    else:
        host, _, port_text = value.partition(":")
        port_text = port_text if ":" in value else None
    if not host:
        raise _bad(text, "name a host, e.g. 127.0.0.1:8480 (0.0.0.0 for every interface, with tokens)")
    if port_text is None:
        port = DEFAULT_PORT
    elif port_text.isdigit() and int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise _bad(text, f"port {port_text!r}: expected a number from 0 to 65535")
    return Bind(host, port)


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (a name is resolved: one that
    also resolves elsewhere is not loopback)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise InvalidInputError(f"--bind: cannot resolve {host!r}: {getattr(exc, 'strerror', None) or exc}") from None
    addresses = {str(info[4][0]).split("%", 1)[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def listen(bind: Bind) -> socket.socket:
    """A listening socket on ``bind``; a port in use or an address not on this machine is one line."""
    try:
        infos = socket.getaddrinfo(bind.host, bind.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise InvalidInputError(f"--bind {bind}: cannot resolve it: {getattr(exc, 'strerror', None) or exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for TIME_WAIT
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise InvalidInputError(f"cannot listen on {bind}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def bound(sock: socket.socket, bind: Bind) -> Bind:
    """The address actually bound (the port port 0 picked)."""
    return Bind(bind.host, int(sock.getsockname()[1]))


def run(app: Any, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until SIGINT, SIGTERM or SIGHUP: each stops it gracefully (the
    requests in progress finish) and the command exits 0; a second SIGINT does not wait."""
    import contextlib
    import signal
    from collections.abc import Iterator

    import uvicorn

    class Server(uvicorn.Server):
        # uvicorn re-raises the signal it stopped on once it is done, so the process would die of
        # it (exit -15, or a KeyboardInterrupt) after a clean stop: the signals are handled here
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        def install_signal_handlers(self) -> None:  # the same, for uvicorn before capture_signals
            pass

    # uvicorn's own lines only for trouble; the command prints where it listens itself
    # a graceful stop waits for the requests in progress; the event streams end within a second
    # of being told (the hub), and nothing else of this server takes long
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False, lifespan="on",
                            timeout_graceful_shutdown=10)
    server = Server(config)
    hub = getattr(getattr(app, "state", None), "hub", None)

    def stop(signum: int, frame: Any) -> None:
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True  # Ctrl-C twice: do not wait for the requests in progress
        server.should_exit = True
        if hub is not None:
            hub.close()  # open event streams would otherwise hold the stop up

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, stop) for s in handled}
    try:
        server.run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

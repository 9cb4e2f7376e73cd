"""Stand-ins shared by the tests that run the library's procedures for real (test_real_*.py).

``stand_ins`` (module): programs this machine lacks, as small scripts in a bin folder (the
``unjucks`` CLI reading a templates folder, ``redis-cli`` answering ``cluster info``), and a TLS
endpoint on loopback whose certificate (90 days) a CA made for the test signs; ``env()`` trusts
that CA (SSL_CERT_FILE) and points the unjucks stand-in at its templates.
"""

from __future__ import annotations

import socket
import ssl
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers._common import free_port
from tests.servers.tlsproxy import make_certificates

UNJUCKS = textwrap.dedent('''\
    #!/usr/bin/env python3
    """Stand-in for the unjucks CLI: templates are the folders of $UNJUCKS_TEMPLATES; it only reads."""
    import os, pathlib, sys
    root = pathlib.Path(os.environ.get("UNJUCKS_TEMPLATES", "/nonexistent"))
    args = sys.argv[1:]
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    if args[:1] == ["list"]:
        print("\\n".join(names) or "no templates")
        sys.exit(0 if names else 1)
    if "--dry-run" not in args:
        sys.exit("this stand-in only does dry runs")
    if args[:1] == ["generate"]:
        if args[1] not in names:
            sys.exit(f"Template not found: {args[1]}")
        print(f"would generate {args[1]}/index.js")
    elif args[:2] == ["semantic", "generate"]:
        if "semantic" not in names:
            sys.exit("Template not found: semantic")
        print("would generate vocabulary.ttl for", args[args.index("--namespace") + 1])
    else:
        sys.exit(f"unknown command {args}")
''')

REDIS_CLI = "#!/bin/sh\nprintf 'cluster_state:%s\\r\\ncluster_slots_assigned:16384\\r\\n' \"${REDIS_CLUSTER_STATE:-ok}\"\n"


@dataclass
class StandIns:
    bin: Path
    templates: Path
    ca: Path
    tls_port: int

    def env(self, **extra: str) -> dict[str, str]:
        return {"UNJUCKS_TEMPLATES": str(self.templates), "SSL_CERT_FILE": str(self.ca), "DB_PASSWORD": "x", **extra}


def _serve_tls(sock: socket.socket, context: ssl.SSLContext, stop: threading.Event) -> None:
    """Accept, shake hands, close: all the certificate check needs."""
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            conn.close()


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIns]:
    base = tmp_path_factory.mktemp("stand-ins")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    (bin_dir / "unjucks").write_text(UNJUCKS)
    (bin_dir / "redis-cli").write_text(REDIS_CLI)
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    templates = base / "templates"
    for name in ("test-template", "semantic", "component"):
        (templates / name).mkdir(parents=True)
    certs = make_certificates(base, valid_days=90)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    sock = socket.create_server(("127.0.0.1", free_port("127.0.0.1")))
    stop = threading.Event()
    thread = threading.Thread(target=_serve_tls, args=(sock, context, stop), daemon=True)
    thread.start()
    try:
        yield StandIns(bin_dir, templates, certs.ca, sock.getsockname()[1])
    finally:
        stop.set()
        sock.close()



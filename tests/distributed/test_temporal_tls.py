"""mTLS to the Temporal engine (RUNPROC_TEMPORAL_TLS_*): the controller and a worker reach
the dev server through a TLS front that requires a client certificate
(tests/servers/tlsproxy.py); without the right certificate, one line and exit 2."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import runproc, write
from tests.servers.temporal import TemporalServer, start_worker, stop_worker
from tests.servers.tlsproxy import Certificates, TlsProxy, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def proxy(temporal_server: TemporalServer, certs: Certificates) -> Iterator[TlsProxy]:
    front = TlsProxy((temporal_server.host, temporal_server.port), certs)
    front.start()
    yield front
    front.stop()


def _mtls(certs: Certificates, *, cert: Path | None = None, key: Path | None = None) -> dict[str, str]:
    return {"RUNPROC_TEMPORAL_TLS_CA": str(certs.ca), "RUNPROC_TEMPORAL_TLS_CERT": str(cert or certs.client_cert),
            "RUNPROC_TEMPORAL_TLS_KEY": str(key or certs.client_key)}


def test_a_run_over_mtls_runs_end_to_end(temporal_server: TemporalServer, proxy: TlsProxy, certs: Certificates,
                                         tmp_path: Path) -> None:
    queue = f"tls-{uuid.uuid4().hex[:8]}"
    worker = start_worker(proxy.address, queue, name="w-tls", cwd=tmp_path, env=_mtls(certs))
    try:
        temporal_server.wait_for_pollers(queue, identity_contains="w-tls", proc=worker)
        path = write(tmp_path, """
            procedure: secured
            steps:
              - id: hello
                shell: echo hello over tls
        """)
        done = runproc(tmp_path, str(path), "--output", "json", "--engine", f"temporal://{proxy.address}",
                       "--queue", queue, env=_mtls(certs))
        assert done.rc == 0, done.stderr
        assert done.step("hello")["stdout"] == "hello over tls\n" and done.step("hello")["worker"] == "w-tls"
    finally:
        stop_worker(worker)


def test_without_the_right_client_certificate_the_engine_is_refused_in_one_line(
        proxy: TlsProxy, certs: Certificates, tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: secured
        steps:
          - id: hello
            shell: "true"
    """)
    engine = ["--engine", f"temporal://{proxy.address}"]
    cases = {
        "no client certificate": {"RUNPROC_TEMPORAL_TLS_CA": str(certs.ca)},
        "a stranger's certificate": _mtls(certs, cert=certs.stranger_cert, key=certs.stranger_key),
        "plaintext to a TLS server": {},
    }
    for why, env in cases.items():
        done = runproc(tmp_path, str(path), *engine, env=env, timeout=60)
        assert done.rc == 2 and "cannot connect" in done.stderr, (why, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, (why, done.stderr)
    half = runproc(tmp_path, str(path), *engine, env={"RUNPROC_TEMPORAL_TLS_CERT": str(certs.client_cert)})
    assert half.rc == 2 and "RUNPROC_TEMPORAL_TLS_KEY is not" in half.stderr, half.stderr
    missing = runproc(tmp_path, str(path), *engine, env=_mtls(certs, key=tmp_path / "nope.pem"))
    assert missing.rc == 2 and "RUNPROC_TEMPORAL_TLS_KEY=" in missing.stderr and "cannot read" in missing.stderr

"""A TLS front for a plaintext server on loopback, requiring a client certificate (mTLS).

Temporal's dev server speaks no TLS; a production cluster does. This proxy terminates TLS
(ALPN h2, as gRPC asks) with certificates made for the test (a CA, a server certificate for
127.0.0.1, a client certificate), checks the client's certificate against the CA, and
forwards the decrypted bytes to the dev server, which sees plain HTTP/2. What runproc's
``RUNPROC_TEMPORAL_TLS_*`` settings do is thus tested against a real TLS handshake.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # signed by another CA: the proxy refuses it
    stranger_key: Path


def make_certificates(folder: Path, valid_days: int = 1) -> Certificates:
    """A CA and certificates it signed, valid for ``valid_days`` (a stranger's signed by another CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def cert(subject: str, own: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
             *, ca: bool = False, ip: str | None = None) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                   .public_key(own.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=valid_days))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ip is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                            critical=False)
        return builder.sign(signer, hashes.SHA256())

    def save(path: Path, obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
        if isinstance(obj, x509.Certificate):
            path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
        else:
            path.write_bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return path

    ca_key, other_ca_key, server_key, client_key, stranger_key = key(), key(), key(), key(), key()
    ca = cert("runproc test CA", ca_key, "runproc test CA", ca_key, ca=True)
    return Certificates(
        ca=save(folder / "ca.pem", ca),
        server_cert=save(folder / "server.pem", cert("127.0.0.1", server_key, "runproc test CA", ca_key,
                                                     ip="127.0.0.1")),
        server_key=save(folder / "server-key.pem", server_key),
        client_cert=save(folder / "client.pem", cert("runproc worker", client_key, "runproc test CA", ca_key)),
        client_key=save(folder / "client-key.pem", client_key),
        stranger_cert=save(folder / "stranger.pem", cert("stranger", stranger_key, "other CA", other_ca_key)),
        stranger_key=save(folder / "stranger-key.pem", stranger_key))


class TlsProxy:
    """127.0.0.1:<port> (TLS, client certificate required) -> ``upstream`` (plaintext)."""

    def __init__(self, upstream: tuple[str, int], certs: Certificates) -> None:
        self.upstream = upstream
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certs.server_cert, certs.server_key)
        self.context.load_verify_locations(certs.ca)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.set_alpn_protocols(["h2"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.address = f"127.0.0.1:{self.port}"
        self.refused = 0  # handshakes that failed (no or a wrong client certificate)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="test-tls-proxy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.refused += 1
            raw.close()
            return
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            tls.close()
            return
        done = threading.Event()

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                done.set()

        threading.Thread(target=pump, args=(upstream, tls), daemon=True).start()
        pump(tls, upstream)
        done.wait(timeout=5)
        for s in (tls, upstream):
            with contextlib.suppress(OSError):
                s.close()

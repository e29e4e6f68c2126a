"""An HTTPS stand-in for the API server, with a certificate from the test bed's PKI (openssl)."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubedag.testbed.pki import Pki


class TlsApi(ThreadingHTTPServer):
    """Answers every PATCH with ``status`` and a Status body, chunked when ``chunked`` is set."""

    status = 200
    chunked = False
    requests: list[dict[str, Any]]
    pki: Pki

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: TlsApi
    protocol_version = "HTTP/1.1"  # chunked answers need it

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({
            "path": self.path, "headers": dict(self.headers), "body": json.loads(body),
        })
        status = self.server.status
        payload = json.dumps({"kind": "Status", "message": f"answered {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if self.server.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (payload[:10], payload[10:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


def serve_tls(pki: Pki, host: str = "127.0.0.1") -> TlsApi:
    server = TlsApi((host, 0), _Handler)
    server.requests = []
    server.pki = pki
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def service_account(directory: Path, ca: Path, token: str = "sa-token") -> Path:
    """A service account mount as a pod has it: token and ca.crt."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(ca.read_bytes())
    return directory

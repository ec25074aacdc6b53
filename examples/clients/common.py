"""What the sample clients share: command-line options, the server's metadata (RFC 8414 /
OpenID Connect discovery), a loopback redirect receiver (RFC 8252 7.3) and one JSON line per
step on stdout, so that a person or a test can follow along."""

import argparse
import http.server
import json
import os
import sys
import threading
import urllib.parse

import requests


def options(description: str, secret: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--issuer", default=os.environ.get("AUTHLEDGER_ISSUER", "http://127.0.0.1:8080"),
                   help="the authorization server (default http://127.0.0.1:8080)")
    p.add_argument("--client-id", required=True)
    if secret:
        p.add_argument("--client-secret", default=os.environ.get("CLIENT_SECRET"),
                       help="the client's secret (or CLIENT_SECRET in the environment)")
    return p


def metadata(issuer: str) -> dict:
    """The server's metadata. Plain http is allowed only on this machine (authlib refuses it
    elsewhere, as it should)."""
    host = urllib.parse.urlsplit(issuer).hostname
    if issuer.startswith("http://") and host in ("127.0.0.1", "localhost", "::1"):
        os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    res = requests.get(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=10)
    res.raise_for_status()
    return res.json()


def step(name: str, **fields) -> None:
    """One line of progress: {"step": name, ...}."""
    print(json.dumps({"step": name, **fields}), flush=True)


def fail(message: str) -> None:
    step("error", message=message)
    sys.exit(1)


class Callback:
    """Receives one redirect on http://127.0.0.1:<a free port>/callback and keeps its URL."""

    def __init__(self) -> None:
        self.url = None
        self.done = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the standard library's name)
                if not self.path.startswith("/callback"):
                    self.send_error(404)
                    return
                outer.url = f"http://127.0.0.1:{outer.port}{self.path}"
                body = b"You can close this window and return to the application.\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                outer.done.set()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.redirect_uri = f"http://127.0.0.1:{self.port}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, seconds: float = 300) -> str:
        if not self.done.wait(seconds):
            fail("no redirect came back within the time allowed")
        self.server.shutdown()
        return self.url

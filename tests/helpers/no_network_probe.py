"""Start the studio with socket.connect recorded; print every address it tried, as JSON."""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import urllib.request

attempts: list[str] = []
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _record(address) -> None:
    attempts.append(address if isinstance(address, str) else str(address[0]))


def connect(self, address):
    _record(address)
    return _connect(self, address)


def connect_ex(self, address):
    _record(address)
    return _connect_ex(self, address)


socket.socket.connect, socket.socket.connect_ex = connect, connect_ex

from studio.app import build_app  # noqa: E402
from studio.context import StudioContext  # noqa: E402

port = int(sys.argv[1])
demo = build_app(StudioContext(tempfile.mkdtemp()))
demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port,
            ssr_mode=False, quiet=True)
for path in ("", "config", "gradio_api/info"):
    urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=30).read()
demo.close()
print(json.dumps(attempts))

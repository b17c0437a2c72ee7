"""Serve the studio as launch.py does, train a model through it, with socket.connect
recorded; print every address it tried, as JSON."""

from __future__ import annotations

import json
import socket
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

import threading  # noqa: E402
import time  # noqa: E402

import uvicorn  # noqa: E402

from studio.api import create_app  # noqa: E402
from studio.context import StudioContext  # noqa: E402

# The app as launch.py serves it (REST API + UI), then a real action through the UI's API.
# The socket is bound here, on a port the system picks (a port picked free and bound later by
# the server could be taken in between); connections wait in its backlog until it serves.
listener = socket.create_server(("127.0.0.1", 0))
ctx = StudioContext(tempfile.mkdtemp(), measure_options={"budget_s": 0.02, "memory": False})
server = uvicorn.Server(uvicorn.Config(create_app(ctx), log_level="warning"))
threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True).start()
url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
end = time.monotonic() + 120  # bounds a hang only
while not server.started:
    assert time.monotonic() < end, "the server did not start"
    time.sleep(0.1)
issued = urllib.request.Request(url + "api/session", method="POST")
token = json.loads(urllib.request.urlopen(issued, timeout=30).read())["token"]
for path in ("", "config", "gradio_api/info", "api/kinds", "api/jobs"):
    req = urllib.request.Request(url + path, headers={"X-Studio-Session": token})
    urllib.request.urlopen(req, timeout=30).read()

from gradio_client import Client  # noqa: E402

Client(url, verbose=False).predict("wine", "mlp", None, "label", 1, 0.01,
                                   api_name="/train_baseline")
server.should_exit = True
print(json.dumps(attempts))

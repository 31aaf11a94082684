import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SSD_KERAS_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


# Real data (../shared/data beside the project, see its README); tests skip without it.
SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           os.pardir, "shared", "data")


@pytest.fixture
def raccoon_dir():
    """``../shared/data/raccoon``: 200 real photos + labelImg XML (``annotations/``, ``images/``)."""
    path = os.path.normpath(os.path.join(SHARED_DATA, "raccoon"))
    if not os.path.isdir(os.path.join(path, "annotations")):
        pytest.skip(f"real raccoon data not found at {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture
def mobilenet_v2_npy():
    """``../shared/data/mobilenet_v2_imagenet/npy``: the TF-slim MobileNetV2 1.0 ImageNet arrays."""
    path = os.path.normpath(os.path.join(SHARED_DATA, "mobilenet_v2_imagenet", "npy"))
    if not os.path.isfile(os.path.join(path, "Conv_weights.npy")):
        pytest.skip(f"TF-slim MobileNetV2 arrays not found at {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture(autouse=True)
def _clear_keras_session():
    """Keep Keras name counters and graphs from leaking between tests (only if Keras is in use)."""
    yield
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session(free_memory=False)


def _make_handler():
    import http.server
    import re

    class Handler(http.server.BaseHTTPRequestHandler):
        """Serves ``server.files`` ({path without leading '/': bytes}); honours ``Range: bytes=N-``
        unless ``server.honour_range`` is False; records ``(path, Range header)`` per request."""

        def do_GET(self):  # noqa: N802 - http.server's naming
            server = self.server
            server.requests.append((self.path, self.headers.get("Range")))
            data = server.files.get(self.path.lstrip("/"))
            if data is None:
                self.send_error(404)
                return
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if match and server.honour_range:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                body = data[start:]
            else:
                self.send_response(200)
                body = data
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def http_server():
    """A threaded HTTP server on 127.0.0.1 (random port) for download tests.

    Attributes: ``files`` (path -> bytes), ``requests`` (list of (path, Range)),
    ``honour_range`` (bool), ``base_url`` (``http://127.0.0.1:PORT``).
    """
    import http.server
    import threading

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler())
    httpd.files, httpd.requests, httpd.honour_range = {}, [], True
    httpd.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture(scope="session")
def raccoon_detectors(tmp_path_factory):
    """``{loss: (model, .keras path)}``: tiny detectors trained in seconds on raccoon photos
    (tests/raccoon_fixtures.py; skips when ../shared/data/raccoon is absent)."""
    from raccoon_fixtures import train_raccoon_detectors
    return train_raccoon_detectors(tmp_path_factory.mktemp("raccoon_detectors"))


@pytest.fixture
def offline(monkeypatch):
    """Any network access fails the test: Keras' get_file, urllib, any socket connection
    (also to 127.0.0.1: do not combine with ``http_server``)."""
    import socket
    import urllib.request

    import keras

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:2] or args[:1]}")

    monkeypatch.setattr(keras.utils, "get_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)

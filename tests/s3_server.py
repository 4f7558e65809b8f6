"""A real S3-compatible server on loopback for the object-store tests: moto's, in a process of its own.

:func:`start` runs this file as a script: moto's S3 served on 127.0.0.1 at a port the OS picks
(so any number of test processes run side by side under pytest-xdist), each request it answers
logged as a JSON line to a file the test reads (:meth:`S3Server.requests_since`). Its own
process, not a thread of the test's: the client and the server then do not take turns on one
interpreter lock, which halves the time of every request (4.7 ms against 9–10 ms here).

Fixtures: ``s3_server`` (one per test process) and ``s3`` (an empty bucket of the test's own, and
the usual variables — ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION`` — pointing at the server through monkeypatch, so that they end with the
test). Processes started meanwhile (a Dask LocalCluster's workers) inherit them; nothing is
passed as storage options. The credentials are distinctive strings, so that a test can prove
none of them ends up in a store.

bench/loader.py uses :func:`start` too.
"""

from __future__ import annotations

import functools
import itertools
import json
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "accelstore-test-access-key"
SECRET_KEY = "accelstore-test-secret-key"
REGION = "us-east-1"
CONTROL = "/_control/replace-on-get/"
"""A PUT to this path + ``bucket/key`` (not passed to moto) makes the server replace that object
with the PUT's body when the next GET of it arrives, just before answering that GET."""
START_TIMEOUT = 60


@dataclass(frozen=True)
class Request:
    method: str
    bucket: str
    key: str
    query: str
    range: str  # the Range header, "" for the whole object


@dataclass
class S3Server:
    """The server's endpoint, its process and its request log."""

    endpoint: str
    process: subprocess.Popen
    log: Path

    @property
    def mark(self) -> int:
        """A position in the request log: what :meth:`requests_since` counts from."""
        return len(self._lines())

    def requests_since(self, mark: int) -> list[Request]:
        """The requests answered since ``mark`` (each is logged before it is answered)."""
        return [Request(**json.loads(line)) for line in self._lines()[mark:]]

    def replace_on_next_get(self, bucket: str, key: str, content: bytes) -> None:
        """Replace ``bucket/key`` with ``content`` when its next GET arrives, before answering it:
        a new version lands at an exact point of a download, without timing anything."""
        request = urllib.request.Request(f"{self.endpoint}{CONTROL}{bucket}/{key}", data=content, method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def _lines(self) -> list[str]:
        return self.log.read_text().splitlines()


def environment(endpoint: str) -> dict[str, str]:
    """The variables that point boto (and so s3fs, in this and every child process) at ``endpoint``."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }


def start(log: Path) -> S3Server:
    """Start the server in a process of its own, logging its requests to ``log``."""
    log.write_text("")
    process = subprocess.Popen([sys.executable, __file__, str(log)], stdout=subprocess.PIPE, text=True)
    first_line: list[str] = []
    reader = threading.Thread(target=lambda: first_line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    if not first_line or not first_line[0].startswith("http://"):
        process.kill()
        raise RuntimeError(f"moto's S3 server did not start within {START_TIMEOUT} s (exit status {process.poll()})")
    return S3Server(first_line[0].strip(), process, log)


@dataclass
class Bucket:
    """A bucket of its own on the server, the environment pointing at the server."""

    name: str
    server: S3Server

    def url(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}"

    @functools.cached_property
    def fs(self):
        """An s3fs filesystem configured by the environment alone, without a listings cache
        (other processes, Dask workers, write to the bucket too)."""
        import s3fs

        return s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True)


_names = itertools.count()


@contextmanager
def new_bucket(server: S3Server) -> Iterator[Bucket]:
    """An empty bucket of its own, the AWS variables pointing at ``server`` until the block ends."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment(server.endpoint).items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        bucket = Bucket(f"test-{next(_names)}-{uuid.uuid4().hex[:8]}", server)
        bucket.fs.mkdir(bucket.name)
        yield bucket


@pytest.fixture(scope="session", name="s3_server")
def s3_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start(tmp_path_factory.mktemp("s3") / "requests.jsonl")
    yield server
    server.stop()


@pytest.fixture(name="s3")
def s3_fixture(s3_server: S3Server) -> Iterator[Bucket]:
    """A bucket of this test's own, and the environment pointing at the server during the test."""
    with new_bucket(s3_server) as bucket:
        yield bucket


# --------------------------------------------------------------------------- the server process


def serve(log: Path) -> None:
    """Serve moto's S3 on 127.0.0.1 at a free port until killed; the endpoint on stdout's first line."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server
    from werkzeug.test import Client

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args: Any) -> None:  # one stderr line per request otherwise
            pass

    app = create_backend_app("s3")  # S3 alone: moto's dispatcher among services rescans its modules on every request
    pending: dict[str, bytes] = {}
    lock = threading.Lock()
    out = log.open("a", buffering=1)

    def logging_app(environ: dict[str, Any], start_response: Any) -> Any:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path.startswith(CONTROL):
            with lock:
                pending[path.removeprefix(CONTROL)] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response("204 No Content", [])
            return []
        bucket, _, key = path.lstrip("/").partition("/")
        fields = {"method": method, "bucket": bucket, "key": key, "query": environ.get("QUERY_STRING", ""), "range": environ.get("HTTP_RANGE", "")}
        with lock:
            out.write(json.dumps(fields) + "\n")
            replacement = pending.pop(f"{bucket}/{key}", None) if method == "GET" else None
        if replacement is not None:  # as the client that sent the GET (moto takes the account from its credential)
            headers = {"Host": environ["HTTP_HOST"], "Authorization": environ.get("HTTP_AUTHORIZATION", "")}
            Client(app).put(f"/{bucket}/{key}", data=replacement, headers=headers)
        return app(environ, start_response)

    http = make_server("127.0.0.1", 0, logging_app, threaded=True, request_handler=QuietHandler)
    print(f"http://127.0.0.1:{http.server_port}", flush=True)
    http.serve_forever()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))

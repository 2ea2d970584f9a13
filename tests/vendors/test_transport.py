"""Transport failures land in the right class of the taxonomy.

The server here is real (a socket on loopback) and misbehaves on purpose; the
question under test is whether the request may have reached the other side.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from sms_provider.errors import (
    AmbiguousError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from sms_provider.vendors.transport import (
    HttpSettings,
    HttpTransport,
    RateLimiter,
    form_body,
)
from tests.simulator_harness import free_port


class Misbehaving(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    client_ports: ClassVar[set[int]] = set()
    #: (request line path, Content-Type, body) of each request, newest last
    seen: ClassVar[list[tuple[str, str | None, bytes]]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.client_ports.add(self.client_address[1])
        length = int(self.headers.get("Content-Length") or 0)
        self.seen.append((self.path, self.headers.get("Content-Type"), self.rfile.read(length)))
        if self.path.startswith("/status/"):
            status = int(self.path.rsplit("/", 1)[1])
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "7")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/slow":
            time.sleep(1.0)
        elif self.path == "/drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    do_GET = do_POST


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def transport(url: str, **kw: object) -> HttpTransport:
    return HttpTransport("test", HttpSettings(base_url=url, read_timeout=0.3, **kw))


def test_connection_refused_is_retryable_even_for_sends() -> None:
    t = transport(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RetryableError, match="could not connect") as err:
        t.request("POST", "/send", idempotent=False)
    assert not isinstance(err.value, AmbiguousError)


@pytest.mark.parametrize("path", ["/slow", "/drop"])
def test_lost_answer_is_ambiguous_for_sends_and_retryable_for_reads(server: str,
                                                                   path: str) -> None:
    t = transport(server)
    with pytest.raises(AmbiguousError):
        t.request("POST", path, idempotent=False)
    with pytest.raises(RetryableError):
        t.request("POST", path, idempotent=True)


def test_http_statuses(server: str) -> None:
    t = transport(server)
    with pytest.raises(RetryableError, match="503"):
        t.request("POST", "/status/503", idempotent=False)
    with pytest.raises(AmbiguousError, match="500"):
        t.request("POST", "/status/500", idempotent=False)
    with pytest.raises(RetryableError, match="502"):
        t.request("GET", "/status/502", idempotent=True)
    with pytest.raises(RateLimitedError) as err:
        t.request("POST", "/status/429", idempotent=False)
    assert err.value.retry_after == 7.0
    with pytest.raises(PermanentError, match="404"):
        t.request("POST", "/status/404", idempotent=False)
    assert t.request("POST", "/fine", idempotent=False).text == "ok"


def test_no_query_string_in_error_text() -> None:
    t = transport(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RetryableError) as err:
        t.request("GET", "/getbalance", idempotent=True,
                  params={"account": "a", "password": "s3cret-value"})
    assert "s3cret-value" not in str(err.value)
    assert "s3cret-value" not in repr(err.value)


def test_keep_alive_reuses_one_connection(server: str) -> None:
    t = transport(server)
    Misbehaving.client_ports.clear()
    for _ in range(5):
        t.request("POST", "/fine", idempotent=False)
    assert len(Misbehaving.client_ports) == 1


def test_rate_limiter_spaces_requests() -> None:
    limiter = RateLimiter(20.0)
    started = time.monotonic()
    for _ in range(6):
        limiter.wait()
    assert time.monotonic() - started >= 0.24
    unlimited = RateLimiter(None)
    started = time.monotonic()
    for _ in range(100):
        unlimited.wait()
    assert time.monotonic() - started < 0.05


_VALUES = st.one_of(st.none(), st.text(), st.binary(), st.integers(),
                    st.lists(st.one_of(st.none(), st.text()), max_size=3))


@given(st.dictionaries(st.text(min_size=1), _VALUES, max_size=5))
def test_form_bodies_are_what_requests_would_send(fields: dict) -> None:
    try:
        expected = requests.Request("POST", "http://vendor.test/", data=fields).prepare().body
    except UnicodeEncodeError:  # a lone surrogate: neither side can encode it
        with pytest.raises(UnicodeEncodeError):
            form_body(fields)
        return
    assert form_body(fields) == (expected or "")


def test_a_form_goes_out_encoded_with_its_content_type(server: str) -> None:
    fields = {"name": "acct", "sign": "a+b=c&d", "ver": 1,
              "data": '{"dest":"13800000000,13800000001","content":"【店】100% ok"}'}
    transport(server).request("POST", "/form", idempotent=False, data=fields)
    path, content_type, body = Misbehaving.seen[-1]
    assert (path, content_type) == ("/form", "application/x-www-form-urlencoded")
    assert parse_qs(body.decode("ascii"), strict_parsing=True) == {
        key: [str(value)] for key, value in fields.items()}


def test_proxy_settings_of_the_environment_are_kept(server: str, monkeypatch) -> None:
    """Read once when the client is made, the environment's proxy still carries requests."""
    monkeypatch.setenv("HTTP_PROXY", server)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    t = transport("http://vendor.test:18080")
    monkeypatch.delenv("HTTP_PROXY")
    t.request("POST", "/via-proxy", idempotent=False, data={"a": "b"})
    assert Misbehaving.seen[-1][0] == "http://vendor.test:18080/via-proxy"
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    transport(server).request("POST", "/direct", idempotent=False)
    assert Misbehaving.seen[-1][0] == "/direct"

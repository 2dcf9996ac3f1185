"""Server hygiene against a real server on 127.0.0.1: what a web page may make it do (Content-Type, Origin, CORS),
how long a slow client may hold a connection (header and body read timeouts), and what /metrics and the access
log record. Sizes and times are bounded: read timeouts of 0.5 s, a few dozen connections.
"""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from janus_rt.serve.settings import ServeSettings  # noqa: E402
from serve_utils import base, ckpt, make, start_server  # noqa: E402,F401 - fixtures

CHAT = "/v1/chat/completions"
IMAGES = "/v1/images/generations"
CHAT_BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "seed": 0}
PAGE = "https://evil.example"


def serve(m, **settings):
    return start_server(m, ServeSettings(port=0, **settings))


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["code"]


def engine_requests(m) -> int:
    s = m.stats()
    return s["finished_requests"] + s["cancelled_requests"] + s["failed_requests"] + s["queued_requests"]


# ------------------------------------------------------------------------------------------ content type
def test_a_body_not_sent_as_json_is_refused_with_415_before_the_engine(make) -> None:
    m = make()
    raw = json.dumps(CHAT_BODY).encode()
    with serve(m) as url:
        for headers in ({"content-type": "text/plain"}, {}, {"content-type": "application/x-www-form-urlencoded"}):
            response = httpx.post(url + CHAT, content=raw, headers=headers, timeout=30)
            assert error_code(response, 415) == "unsupported_media_type"
        assert error_code(httpx.post(url + IMAGES, content=b'{"prompt": "x"}', headers={"content-type": "text/plain"},
                                     timeout=30), 415) == "unsupported_media_type"
        assert engine_requests(m) == 0
        ok = httpx.post(url + CHAT, content=raw, headers={"content-type": "Application/JSON; charset=utf-8"}, timeout=60)
        assert ok.status_code == 200, ok.text


# ------------------------------------------------------------------------------------------------ origin
def test_a_cross_origin_page_is_refused_with_403_unless_allowed(make) -> None:
    m = make()
    with serve(m) as url:
        refused = httpx.post(url + CHAT, json=CHAT_BODY, headers={"Origin": PAGE}, timeout=30)
        assert error_code(refused, 403) == "origin_not_allowed"
        assert error_code(httpx.get(url + "/v1/models", headers={"Origin": PAGE}, timeout=30), 403)
        assert engine_requests(m) == 0
        same = httpx.get(url + "/v1/models", headers={"Origin": url}, timeout=30)  # a page served by this server
        assert same.status_code == 200
        assert httpx.post(url + CHAT, json=CHAT_BODY, timeout=60).status_code == 200  # no Origin: not a browser


def test_an_allowed_origin_gets_cors_headers_and_its_preflight_answered(make) -> None:
    with serve(make(), allow_origins=(PAGE,)) as url:
        preflight = httpx.options(url + CHAT, headers={"Origin": PAGE, "Access-Control-Request-Method": "POST",
                                                       "Access-Control-Request-Headers": "content-type"}, timeout=30)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == PAGE
        answer = httpx.post(url + CHAT, json=CHAT_BODY, headers={"Origin": PAGE}, timeout=60)
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == PAGE
        other = httpx.post(url + CHAT, json=CHAT_BODY, headers={"Origin": "https://other.example"}, timeout=30)
        assert error_code(other, 403) == "origin_not_allowed"


def test_settings_refuse_an_origin_with_a_path() -> None:
    from janus_rt.errors import InputError

    with pytest.raises(InputError, match="allow_origins"):
        ServeSettings(allow_origins=("https://a.example/app",))


# ----------------------------------------------------------------------------------------- read timeouts
def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket timeout bounds the wait)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_body_that_stops_arriving_gets_408_and_the_connection_closed(make) -> None:
    with serve(make(), read_timeout_s=0.5) as url:
        sock = connect(url)
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b'{"messages":')
        answer = read_all(sock)
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"body_timeout" in answer and time.monotonic() - started < 5


def test_connections_trickling_headers_are_closed_after_the_read_timeout(make) -> None:
    with serve(make(), read_timeout_s=0.5) as url:
        socks = [connect(url) for _ in range(40)]
        started = time.monotonic()
        for s in socks:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never the blank line that ends the headers
        for s in socks[:20]:
            s.sendall(b"X-Slow: 1\r\n")  # a byte now and then does not extend the deadline
        closed = [read_all(s) == b"" for s in socks]
        for s in socks:
            s.close()
        assert all(closed) and time.monotonic() - started < 5
        assert httpx.get(url + "/health", timeout=10).status_code == 200  # the server still answers


# ------------------------------------------------------------------------------------- metrics and log
def metric(text: str, name: str) -> float:
    """The value of the sample `name` (with its labels, as written) in a Prometheus text page."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_a_500_escaping_the_handlers_is_counted(make, monkeypatch) -> None:
    m = make()

    def broken() -> dict:
        raise RuntimeError("health check exploded")

    with serve(m) as url:
        monkeypatch.setattr(m.engine, "health", broken)
        assert httpx.get(url + "/health", timeout=30).status_code == 500
        page = httpx.get(url + "/metrics", timeout=30).text
    assert metric(page, 'janus_rt_requests_total{route="/health",status="500"}') == 1


def test_metrics_have_process_figures_queue_wait_and_time_to_first_token(make) -> None:
    with serve(make()) as url:
        assert httpx.post(url + CHAT, json=CHAT_BODY, timeout=60).status_code == 200
        page = httpx.get(url + "/metrics", timeout=30).text
    assert metric(page, "janus_rt_queue_wait_seconds_count") == 1
    assert metric(page, "janus_rt_time_to_first_token_seconds_count") == 1
    assert 0 <= metric(page, "janus_rt_queue_wait_seconds_sum") <= metric(page, "janus_rt_time_to_first_token_seconds_sum")
    assert metric(page, "process_resident_memory_bytes") > 1e6
    assert metric(page, "process_open_fds") > 0 and metric(page, "process_cpu_seconds_total") > 0


def test_one_access_log_line_per_request(make, caplog) -> None:
    caplog.set_level(logging.INFO, logger="janus_rt.access")
    with serve(make()) as url:
        caplog.clear()
        answer = httpx.post(url + CHAT, json=CHAT_BODY, headers={"X-Request-Id": "req-42"}, timeout=60)
        assert answer.status_code == 200 and answer.headers["x-request-id"] == "req-42"
        httpx.get(url + "/v1/nothing", timeout=30)
        tokens = answer.json()["usage"]["completion_tokens"]
    lines = [r.getMessage() for r in caplog.records if r.name == "janus_rt.access"]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"request_id=req-42 route={CHAT} status=200 latency_ms=")
    assert lines[0].endswith(f" tokens={tokens}")
    assert " route=other status=404 " in lines[1] and lines[1].endswith(" tokens=-")


# --------------------------------------------------------------------------------------------- shutdown
@pytest.mark.subprocess
def test_sigterm_past_the_grace_period_cuts_in_flight_requests_with_503_and_an_sse_error(tmp_path) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys
    import threading

    from janus_rt.checkpoint.tiny import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(tmp_path / "ckpt")  # 24x24 grid: 576 decode steps an image, seconds on a CPU
    env = {**os.environ, "JANUS_RT_API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-m", "janus_rt.cli.main", "serve", "--model", str(ckpt), "--device",
                             "cpu", "--port", "0", "--grace-period", "0.5"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    log: list[str] = []
    answers: dict[str, object] = {}
    try:
        url = None
        for line in proc.stderr:
            log.append(line)
            if (found := re.search(r"on (http://127\.0\.0\.1:\d+)", line)):
                url = found.group(1)
                break
        assert url is not None, "".join(log)
        drain = threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True)
        drain.start()
        wait_until_serving(url, proc)  # the port is bound before the model loads; it answers once serving

        def image() -> None:
            answers["image"] = httpx.post(url + IMAGES, json={"prompt": "a fox", "seed": 0}, timeout=60)

        def stream() -> None:
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1900, "stream": True,
                    "seed": 0, "temperature": 0}
            with httpx.stream("POST", url + CHAT, json=body, timeout=60) as response:
                answers["stream"] = [line for line in response.iter_lines() if line]

        threads = [threading.Thread(target=image), threading.Thread(target=stream)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while active_rows(httpx.get(url + "/metrics", timeout=10).text) < 3:  # both run: 2 image rows + 1 text row
            assert time.monotonic() < deadline, "the requests never ran"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert proc.wait(60) == 0
        drain.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(log)
    image_answer = answers["image"]
    assert image_answer.status_code == 503, image_answer.text
    assert image_answer.json()["error"]["code"] == "shutting_down"
    events = answers["stream"]
    assert events[-1] == "data: [DONE]" and '"shutting_down"' in events[-2], events[-3:]
    assert "stopped      2 in-flight request(s) cut" in text, text
    assert text.count("cut request_id=") == 2
    assert "Traceback" not in text and "Event loop is closed" not in text, text


def active_rows(metrics_text: str) -> float:
    """The `janus_rt_active_rows` gauge of a /metrics page."""
    (line,) = [line for line in metrics_text.splitlines() if line.startswith("janus_rt_active_rows ")]
    return float(line.split()[1])


def wait_until_serving(url: str, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Poll /health until the server answers 200 (connections are refused until uvicorn listens)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, "the server exited"
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server never answered /health"
        time.sleep(0.1)

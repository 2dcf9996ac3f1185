"""`janus-rt bench-serve` (bench/serve_load.py, bench/serve_cli.py) against a real server on a tiny model.

What is proven here:
- the percentile helper equals numpy's linear percentile (and an independent sort-and-interpolate);
- only loopback URLs are accepted unless --allow-remote; bad schemes are refused, in flag names;
- a port with nothing listening, or a server whose /health is not 200, is a clear InputError before any load;
- image and streamed chat runs: every request ok, no errors, ordered percentiles, TTFT <= latency, and the
  engine finished exactly the requests sent;
- non-200 answers are counted by status (401 without the key, 429 on a full queue), a gated engine gives "timeout" errors both for
  the per-request timeout and for the level's time bound (the run stops by itself, unsent requests not sent);
- the CLI prints the table and a last line that is the JSON result, also written by --json-out.
No timing assertions: the gate holds requests, never a sleep.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
pytest.importorskip("httpx")

import janus_rt  # noqa: E402
from janus_rt.bench.arrivals import percentile as sorted_percentile  # noqa: E402
from janus_rt.bench.serve_load import LoadSpec, check_url, is_loopback, percentile, run  # noqa: E402
from janus_rt.cli.main import main  # noqa: E402
from janus_rt.errors import InputError  # noqa: E402
from janus_rt.serve.settings import ServeSettings  # noqa: E402
from serve_utils import base, ckpt, make, start_server  # noqa: E402,F401 - fixtures

GATE_WAIT_S = 60.0  # bound of the gate (a failure, not a timing assertion)


def free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_ordered(p: dict) -> None:
    assert p["p50"] is not None and p["p50"] <= p["p95"] <= p["p99"], p


def hold_prefill(m: janus_rt.Janus, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Hold the engine thread in every prefill until the returned event is set."""
    opened = threading.Event()
    original = m.step_backend.prefill

    def gated(*args, **kwargs):
        opened.wait(GATE_WAIT_S)
        return original(*args, **kwargs)

    monkeypatch.setattr(m.step_backend, "prefill", gated)
    return opened


# ------------------------------------------------------------------------------------------ helpers
@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=50),
       q=st.floats(min_value=0, max_value=100))
def test_percentile_is_numpys_linear_percentile(values: list[float], q: float) -> None:
    got = percentile(values, q)
    assert isinstance(got, float)
    assert got == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)
    assert got == pytest.approx(sorted_percentile(values, q), rel=1e-9, abs=1e-6)
    assert min(values) <= got <= max(values)


def test_percentile_of_nothing_is_none_and_q_is_checked() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://127.9.8.7:1/", "https://localhost:8443",
                                 "http://LOCALHOST", "http://[::1]:8000"])
def test_loopback_urls_are_accepted(url: str) -> None:
    assert check_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "http://example.com", "http://127.0.0.1.nip.io:8000",
                                 "http://[2001:db8::1]:8000", "http://0.0.0.0:8000"])
def test_remote_urls_need_allow_remote(url: str) -> None:
    assert not is_loopback(urlsplit(url).hostname)
    with pytest.raises(InputError, match="--allow-remote") as e:
        check_url(url)
    assert "--url" in str(e.value) and e.value.param == "--url"
    assert check_url(url, allow_remote=True) == url
    LoadSpec(url=url, allow_remote=True)  # accepted as a whole spec too


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:8000", "127.0.0.1:8000", "http://", "http://127.0.0.1:99999"])
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(InputError, match="--url"):
        check_url(url, allow_remote=True)


@pytest.mark.parametrize("changes,flag", [({"requests": 0}, "--requests"), ({"concurrency": (1, 0)}, "--concurrency"),
                                          ({"timeout_s": 0}, "--timeout"), ({"max_seconds": -1}, "--max-seconds"),
                                          ({"n": 0}, "--n"), ({"max_tokens": 0}, "--max-tokens"),
                                          ({"kind": "audio"}, "--kind")])
def test_spec_names_the_bad_flag(changes: dict, flag: str) -> None:
    with pytest.raises(InputError, match=flag):
        LoadSpec(url="http://127.0.0.1:8000", **changes)


def test_command_never_shows_the_api_key() -> None:
    command = LoadSpec(url="http://127.0.0.1:8000", api_key="s3cret", kind="chat").command()
    assert "s3cret" not in command and "--api-key REDACTED" in command and "--max-tokens 64" in command


# ------------------------------------------------------------------------------------ before the load
def test_nothing_listening_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(InputError, match="janus-rt serve") as e:
        run(LoadSpec(url=url, concurrency=(1,), requests=1))
    assert url in str(e.value)


def test_an_unhealthy_server_is_refused_before_any_request(make) -> None:
    m = make()
    with start_server(m, ServeSettings(port=0)) as url:
        m.close()  # the engine stops: /health answers 503
        with pytest.raises(InputError, match="503") as e:
            run(LoadSpec(url=url, concurrency=(1,), requests=1))
    assert f"{url}/health" in str(e.value) and "janus-rt serve" in str(e.value)
    assert m.stats()["finished_requests"] == 0


# -------------------------------------------------------------------------------------- real server
def test_image_run_counts_every_request(make) -> None:
    m = make()
    with start_server(m, ServeSettings(port=0)) as url:
        result = run(LoadSpec(url=url, kind="image", concurrency=(1, 2), requests=4))
    assert [r["concurrency"] for r in result["results"]] == [1, 2]
    for r in result["results"]:
        assert (r["sent"], r["ok"], r["not_sent"], r["errors"], r["images"]) == (4, 4, 0, {}, 4)
        assert not r["stopped_at_time_bound"] and r["wall_s"] > 0 and r["images_per_s"] > 0
        assert_ordered(r["latency_ms"])
    assert m.stats()["finished_requests"] == 8
    assert result["kind"] == "image" and result["url"] == url and result["versions"]["httpx"]


def test_streamed_chat_run_measures_ttft_and_tokens(make) -> None:
    m = make()
    with start_server(m, ServeSettings(port=0)) as url:
        result = run(LoadSpec(url=url, kind="chat", concurrency=(1, 2), requests=4, max_tokens=6))
    for r in result["results"]:
        assert (r["sent"], r["ok"], r["errors"]) == (4, 4, {})
        assert_ordered(r["latency_ms"])
        assert_ordered(r["ttft_ms"])
        for q in ("p50", "p95", "p99"):  # TTFT <= latency per request, hence per order statistic
            assert r["ttft_ms"][q] <= r["latency_ms"][q]
        assert 4 <= r["output_tokens"] <= 4 * 6 and r["tokens_per_s_per_request"] > 0
    stats = m.stats()
    assert stats["finished_requests"] == 8 and stats["cancelled_requests"] == 0


def test_non_200_answers_are_counted_by_status(make) -> None:
    m = make()
    with start_server(m, ServeSettings(port=0, api_key="s3cret")) as url:
        refused = run(LoadSpec(url=url, kind="chat", concurrency=(2,), requests=3, max_tokens=2))
        allowed = run(LoadSpec(url=url, kind="chat", concurrency=(2,), requests=3, max_tokens=2, api_key="s3cret"))
    r = refused["results"][0]
    assert (r["sent"], r["ok"], r["errors"]) == (3, 0, {"401": 3})
    assert r["latency_ms"] == {"p50": None, "p95": None, "p99": None} and r["ttft_ms"]["p50"] is None
    assert (allowed["results"][0]["ok"], allowed["results"][0]["errors"]) == (3, {})
    assert m.stats()["finished_requests"] == 3


def test_a_held_engine_gives_timeouts_and_the_run_stops_by_itself(make, monkeypatch) -> None:
    m = make()
    opened = hold_prefill(m, monkeypatch)
    with start_server(m, ServeSettings(port=0)) as url:
        try:
            per_request = run(LoadSpec(url=url, kind="image", concurrency=(2,), requests=2, timeout_s=0.3))
            bounded = run(LoadSpec(url=url, kind="chat", concurrency=(1,), requests=3, max_seconds=0.3))
        finally:
            opened.set()
    r = per_request["results"][0]
    assert (r["sent"], r["ok"], r["errors"], r["stopped_at_time_bound"]) == (2, 0, {"timeout": 2}, False)
    r = bounded["results"][0]
    assert (r["sent"], r["not_sent"], r["ok"], r["errors"]) == (1, 2, 0, {"timeout": 1})
    assert r["stopped_at_time_bound"] and r["output_tokens"] == 0


def test_a_full_queue_is_counted_as_429(make, monkeypatch) -> None:
    m = make()
    opened = hold_prefill(m, monkeypatch)
    with start_server(m, ServeSettings(port=0, max_queue=1)) as url:
        try:
            result = run(LoadSpec(url=url, kind="image", concurrency=(4,), requests=4, timeout_s=2.0))
        finally:
            opened.set()
    r = result["results"][0]
    # held: the request(s) in the gated prefill and one waiting (they time out); at least one more is refused
    assert r["sent"] == 4 and r["ok"] == 0 and set(r["errors"]) <= {"429", "timeout"}
    assert r["errors"].get("429", 0) >= 1 and sum(r["errors"].values()) == 4


# --------------------------------------------------------------------------------------------- CLI
def test_cli_prints_the_table_and_a_json_line(make, capsys, tmp_path: Path) -> None:
    m = make()
    out = tmp_path / "results" / "serve.json"
    with start_server(m, ServeSettings(port=0)) as url:
        rc = main(["bench-serve", "--url", url, "--kind", "chat", "--concurrency", "1,2", "--requests", "2",
                   "--max-tokens", "3", "--json-out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    lines = printed.rstrip("\n").split("\n")
    result = json.loads(lines[-1])
    assert lines[0].startswith("janus-rt bench-serve  chat at " + url)
    assert lines[1].startswith("| concurrency | sent | ok | errors |") and "TTFT p50 ms" in lines[1]
    assert [line.split("|")[1].strip() for line in lines[3:5]] == ["1", "2"]
    assert result["command"].startswith(f"janus-rt bench-serve --url {url} --kind chat --concurrency 1,2")
    assert [r["ok"] for r in result["results"]] == [2, 2]
    assert json.loads(out.read_text()) == result
    assert [p.name for p in out.parent.iterdir()] == ["serve.json"]  # no temp file left behind


def test_cli_refuses_a_remote_url_and_a_bad_level(capsys) -> None:
    assert main(["bench-serve", "--url", "http://example.com:8000", "--requests", "1"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["bench-serve", "--concurrency", "1,0"])
    assert e.value.code == 2
    assert "every value must be >= 1" in capsys.readouterr().err


def test_cli_refuses_a_folder_as_json_out(capsys, tmp_path: Path) -> None:
    assert main(["bench-serve", "--url", f"http://127.0.0.1:{free_port()}", "--json-out", str(tmp_path)]) == 2
    assert "--json-out" in capsys.readouterr().err


def test_cli_nothing_listening(capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["bench-serve", "--url", url, "--requests", "1", "--concurrency", "1"]) == 2
    err = capsys.readouterr().err
    assert url in err and "janus-rt serve" in err

"""Prometheus metrics of one app, in its own `CollectorRegistry` (two apps in one process never share state).

Server-side series are counted as requests pass; the engine's figures (queue depth, active rows, decode
steps, request outcomes) are read from `Janus.stats()` at each scrape, so they are never stale.

    janus_rt_queue_depth                    requests waiting for KV rows
    janus_rt_active_rows / janus_rt_max_rows  KV rows in the running batch / in the pool
    janus_rt_engine_alive                   1 while the engine takes work
    janus_rt_decode_steps_total             decode steps the engine ran
    janus_rt_engine_requests_total{outcome}  finished / cancelled / failed engine requests
    janus_rt_completion_tokens_total        answer tokens served by /v1/chat/completions
    janus_rt_prompt_tokens_total            prompt tokens of served chat requests (images included)
    janus_rt_images_total                   images served by /v1/images/generations
    janus_rt_request_duration_seconds{route}  latency of served requests (histogram)
    janus_rt_requests_total{route,status}   HTTP answers by route and status
    janus_rt_requests_rejected_total{reason}  refused requests (4xx/503) by error code
    janus_rt_requests_cancelled_total{reason}  requests cancelled mid-way: timeout, client_disconnected, shutdown
    janus_rt_queue_wait_seconds             submission -> first prefill of served engine requests (histogram)
    janus_rt_time_to_first_token_seconds    submission -> first sampled token of served engine requests (histogram)
    process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds, ...  the server process (Linux)

A 500 raised outside the route handlers (an exception escaping the app) is counted in janus_rt_requests_total
by access.py's middleware, which also writes one access-log line per request.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300, 600)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)  # queue wait and TTFT


class EngineCollector(Collector):
    """Engine figures read at scrape time from `stats()` and `alive()`."""

    def __init__(self, stats: Callable[[], dict], alive: Callable[[], bool]):
        self._stats = stats
        self._alive = alive

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        yield GaugeMetricFamily("janus_rt_queue_depth", "Requests waiting for KV rows", value=s["queued_requests"])
        yield GaugeMetricFamily("janus_rt_active_rows", "KV rows in the running batch", value=s["active_rows"])
        yield GaugeMetricFamily("janus_rt_max_rows", "KV rows in the engine's pool", value=s["max_rows"])
        yield GaugeMetricFamily("janus_rt_engine_alive", "1 while the engine takes work", value=int(self._alive()))
        yield CounterMetricFamily("janus_rt_decode_steps", "Decode steps the engine ran", value=s["decode_steps"])
        outcomes = CounterMetricFamily("janus_rt_engine_requests", "Engine requests by outcome", labels=["outcome"])
        for outcome in ("finished", "cancelled", "failed"):
            outcomes.add_metric([outcome], s[f"{outcome}_requests"])
        yield outcomes


class ServerMetrics:
    """Every metric of one app (see module docstring)."""

    def __init__(self, stats: Callable[[], dict], alive: Callable[[], bool]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        r.register(EngineCollector(stats, alive))
        self.completion_tokens = Counter("janus_rt_completion_tokens", "Answer tokens served", registry=r)
        self.prompt_tokens = Counter("janus_rt_prompt_tokens", "Prompt tokens of served chat requests", registry=r)
        self.images = Counter("janus_rt_images", "Images served", registry=r)
        self.latency = Histogram("janus_rt_request_duration_seconds", "Latency of served requests", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.responses = Counter("janus_rt_requests", "HTTP answers by route and status", ["route", "status"], registry=r)
        self.rejected = Counter("janus_rt_requests_rejected", "Refused requests by reason", ["reason"], registry=r)
        self.cancelled = Counter("janus_rt_requests_cancelled", "Requests cancelled mid-way", ["reason"], registry=r)
        self.queue_wait = Histogram("janus_rt_queue_wait_seconds", "Submission to first prefill of engine requests",
                                    buckets=WAIT_BUCKETS, registry=r)
        self.first_token = Histogram("janus_rt_time_to_first_token_seconds",
                                     "Submission to first sampled token of engine requests", buckets=WAIT_BUCKETS,
                                     registry=r)
        ProcessCollector(registry=r)  # RSS, CPU seconds, open fds of this process (read from /proc; Linux only)

    def observe_engine_request(self, request: Any) -> None:
        """Queue wait and time to first token of a finished engine `Request` (those it reached)."""
        if request.admitted_at is not None:
            self.queue_wait.observe(request.admitted_at - request.submitted_at)
        if request.first_token_at is not None:
            self.first_token.observe(request.first_token_at - request.submitted_at)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

"""Prometheus metrics of this process: defined here, recorded by any layer, exposed over HTTP.

The metrics live in one registry of their own (``REGISTRY``), beside the
process collectors (CPU, memory, open files, garbage collection). Services
and engines record into them directly (a counter's ``inc`` is a lock and an
add); the HTTP layer records requests and the ops router renders the registry
at ``GET /metrics``. Nothing here knows of HTTP, models or the database.

Every number is this process's own: a deployment of several server processes
(or ``hearth worker`` processes, which serve no ``/metrics``) is scraped once
per server process and summed by Prometheus. Values that live in the database
rather than in a process (the job queue) are read when scraped, through
callbacks registered with ``callback_gauge``; they are the same from every
process.

Label values stay few: routes are their templates (``/v1/files/{file_id}``),
never raw paths, and models are the names clients ask for or catalog ids.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "REGISTRY", "callback_gauge", "render"]

log = logging.getLogger("hearth.metrics")

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

# Seconds: from a few milliseconds (a model list) to minutes (a long transcription or upload).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Processing time over audio time: below 1 is faster than real time.
RTF_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)

# -- HTTP (recorded by hearth.http.metrics) ---------------------------------------------------

HTTP_REQUESTS = Counter(
    "hearth_http_requests", "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"], registry=REGISTRY)
HTTP_DURATION = Histogram(
    "hearth_http_request_duration_seconds",
    "From the request's arrival to its response's last byte (a stream's whole length).",
    ["method", "route"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
HTTP_FIRST_BYTE = Histogram(
    "hearth_http_time_to_first_byte_seconds",
    "From the request's arrival to the first byte of its response body.",
    ["method", "route"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
HTTP_IN_PROGRESS = Gauge(
    "hearth_http_requests_in_progress", "Requests being answered now (streams until they end).",
    registry=REGISTRY)

# -- Models (recorded by hearth.engines.runner) ------------------------------------------------

MODEL_ADMITTED = Gauge(
    "hearth_model_requests_in_flight",
    "Requests holding a place at a model (running or waiting for its threads), by lane.",
    ["model", "lane"], registry=REGISTRY)
MODEL_QUEUED = Gauge(
    "hearth_model_queue_depth", "Steps of work waiting for one of a model's threads.",
    ["model"], registry=REGISTRY)
MODEL_BUSY = Gauge(
    "hearth_model_busy_threads", "A model's threads running a step now.", ["model"], registry=REGISTRY)
MODEL_THREADS = Gauge(
    "hearth_model_threads", "Threads a loaded model runs on.", ["model"], registry=REGISTRY)
MODEL_CAPACITY = Gauge(
    "hearth_model_online_capacity",
    "Online requests a model admits at once (threads + HEARTH_QUEUE_DEPTH); more get a 429.",
    ["model"], registry=REGISTRY)
MODEL_REFUSED = Counter(
    "hearth_model_refused_requests", "Online requests refused (429) because the model was full.",
    ["model"], registry=REGISTRY)

# -- What models made (recorded by services and the usage meter) ---------------------------------

TIME_TO_FIRST_TOKEN = Histogram(
    "hearth_time_to_first_token_seconds",
    "From a streamed generation's start (admitted) to its first token (chat, completions, Responses, Assistants).",
    ["model"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
TOKENS = Counter(
    "hearth_tokens", "Tokens read and generated, by model, usage kind and direction (input, output).",
    ["model", "kind", "direction"], registry=REGISTRY)
AUDIO_SECONDS = Counter(
    "hearth_audio_seconds", "Seconds of audio synthesized (speech) or heard (transcription).",
    ["model", "kind"], registry=REGISTRY)
REAL_TIME_FACTOR = Histogram(
    "hearth_real_time_factor",
    "Processing time over audio duration per request (below 1 is faster than real time); "
    "task is speech or transcription.",
    ["model", "task"], buckets=RTF_BUCKETS, registry=REGISTRY)


def record_real_time_factor(model: str, task: str, elapsed_seconds: float, audio_seconds: float) -> None:
    """One request's real-time factor; nothing for audio too short to tell."""
    if audio_seconds > 0.05:
        REAL_TIME_FACTOR.labels(model, task).observe(elapsed_seconds / audio_seconds)


# -- Values read when scraped -------------------------------------------------------------------

Samples = Iterable[tuple[Sequence[str], float]]


class _CallbackGauge(Collector):
    def __init__(self, name: str, documentation: str, labels: Sequence[str],
                 read: Callable[[], Samples]) -> None:
        self._name, self._doc, self._labels, self._read = name, documentation, list(labels), read

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self._name, self._doc, labels=self._labels)]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._doc, labels=self._labels)
        try:
            for values, value in self._read():
                family.add_metric(list(values), value)
        except Exception:
            # A reading that fails (the database is down) leaves its gauge empty; the rest still renders.
            log.warning("could not read %s for the metrics", self._name, exc_info=True)
            family = GaugeMetricFamily(self._name, self._doc, labels=self._labels)
        return [family]


_callbacks_lock = threading.Lock()


def callback_gauge(name: str, documentation: str, labels: Sequence[str],
                   read: Callable[[], Samples]) -> Callable[[], None]:
    """Register a gauge whose samples ``read`` returns at each scrape; returns its unregistration.

    ``read`` runs on the thread that renders the metrics (never the event loop),
    so it may query the database.
    """
    collector = _CallbackGauge(name, documentation, labels, read)
    with _callbacks_lock:
        REGISTRY.register(collector)

    def unregister() -> None:
        with _callbacks_lock:
            REGISTRY.unregister(collector)

    return unregister


def render() -> bytes:
    """The registry in Prometheus' text format; blocking (callbacks may query), so call it off the loop."""
    return generate_latest(REGISTRY)


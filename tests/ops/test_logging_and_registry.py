"""The JSON log format and the metrics registry's scrape-time gauges, in-process."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config

from prometheus_client.parser import text_string_to_metric_families

from hearth import logs, metrics


def _json_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_a_line_carries_its_request_context_extras_and_exception() -> None:
    logger, stream = _json_logger("hearth.test.json")

    async def request() -> None:
        logs.context.set({"request_id": "req_1"})
        await asyncio.to_thread(logs.note, project_id="proj_9", organization_id=None)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed %s", "here", extra={"model": "whisper-1"})

    asyncio.run(request())
    logger.info("outside")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "failed here" and inside["level"] == "error"
    assert inside["logger"] == "hearth.test.json"
    assert (inside["request_id"], inside["project_id"], inside["model"]) == ("req_1", "proj_9", "whisper-1")
    assert "organization_id" not in inside
    assert inside["exception"].startswith("Traceback") and "ValueError: boom" in inside["exception"]
    assert "request_id" not in outside and outside["message"] == "outside"


def test_the_config_routes_uvicorn_through_the_same_format() -> None:
    config = logs.config("json", "trace")
    assert config["root"]["level"] == 5
    assert config["formatters"]["default"]["()"] is logs.JsonFormatter
    assert config["loggers"]["uvicorn.access"]["handlers"] == ["access"]
    assert logs.config("text", "warning")["root"]["level"] == logging.WARNING


def test_a_scrape_time_gauge_reads_when_scraped_and_survives_a_failing_read() -> None:
    readings: list[list[tuple[tuple[str], float]]] = [[(("a",), 2.0)]]

    def read() -> list[tuple[tuple[str], float]]:
        if not readings:
            raise ConnectionError("database down")
        return readings.pop()

    unregister = metrics.callback_gauge("hearth_test_gauge", "A test gauge.", ["name"], read)
    try:
        first = {s.labels["name"]: s.value for f in text_string_to_metric_families(metrics.render().decode())
                 if f.name == "hearth_test_gauge" for s in f.samples}
        assert first == {"a": 2.0}
        families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
        assert families["hearth_test_gauge"].samples == []
    finally:
        unregister()
    assert "hearth_test_gauge" not in metrics.render().decode()

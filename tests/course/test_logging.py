"""Every log line is structured and names the request it belongs to."""

from __future__ import annotations

import json
import logging

import pytest
from flask.testing import FlaskClient

from course.log import JsonFormatter, RequestIdFilter


def test_each_response_carries_a_fresh_request_id(client: FlaskClient) -> None:
    one = client.get("/healthz").headers["X-Request-ID"]
    two = client.get("/healthz").headers["X-Request-ID"]
    assert one != two and len(one) == 32


def test_a_well_formed_upstream_request_id_is_kept(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "lb-1234abcd"})
    assert response.headers["X-Request-ID"] == "lb-1234abcd"


def test_a_malformed_upstream_request_id_is_replaced(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": 'x" injected {"level": "ERROR"}'})
    assert response.headers["X-Request-ID"] != 'x" injected {"level": "ERROR"}'


def test_request_lines_are_json_with_the_request_id(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rebound")
    caplog.handler.addFilter(RequestIdFilter())
    response = client.get("/healthz")
    request_lines = [r for r in caplog.records if r.name == "rebound.request"]
    assert request_lines
    line = json.loads(JsonFormatter().format(request_lines[-1]))
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["path"] == "/healthz" and line["status"] == 200
    assert isinstance(line["duration_ms"], float)


def test_lines_outside_a_request_say_so() -> None:
    record = logging.LogRecord("rebound.x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    RequestIdFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line == {**line, "request_id": "-", "msg": "hello world", "level": "INFO"}

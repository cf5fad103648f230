"""`rebound serve`: Gunicorn running the app factory in each worker."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from course.app import create_app


class ReboundServer(BaseApplication):  # type: ignore[misc]
    """A Gunicorn application that builds a fresh Rebound app in every worker."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return create_app()


def _logging_config(level: str, fmt: str) -> dict[str, Any]:
    """Gunicorn's own lines in Rebound's format, so every line of the log parses the same way."""
    formatter = "course.log.JsonFormatter" if fmt == "json" else "course.log.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"rebound": {"()": formatter}},
        "filters": {"request_id": {"()": "course.log.RequestIdFilter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "rebound",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
        },
    }


KEEPALIVE_SECONDS = 75


def server_options(
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    trust_proxy: bool,
    announce: str,
    log_level: str,
    log_format: str,
    with_worker: bool = False,
) -> dict[str, Any]:
    """Gunicorn settings; forwarded headers are left to ProxyFix, which trusts only when told."""

    def when_ready(server: Any) -> None:
        server.log.info(announce)
        if with_worker:
            server.rebound_worker = start_grade_worker()
            server.log.info(f"grade worker running (pid {server.rebound_worker.pid})")

    def on_exit(server: Any) -> None:
        stop_grade_worker(getattr(server, "rebound_worker", None))

    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 60,
        "graceful_timeout": 30,
        # Longer than the idle time of the proxy's upstream connections (nginx keeps them 60 s):
        # a server that closes an idle connection first races the proxy's next request on it,
        # and a POST lost that way is not retried (the load test saw those resets at 5 s).
        "keepalive": KEEPALIVE_SECONDS,
        "accesslog": None,
        "logconfig_dict": _logging_config(log_level, log_format),
        "control_socket_disable": True,
        # Gunicorn would otherwise believe X-Forwarded-Proto from 127.0.0.1 by default.
        "forwarded_allow_ips": "*" if trust_proxy else "",
        "secure_scheme_headers": {"X-FORWARDED-PROTO": "https"} if trust_proxy else {},
        "when_ready": when_ready,
        "on_exit": on_exit,
    }


def start_grade_worker() -> subprocess.Popen[bytes]:
    """`rebound serve --with-worker`: the grade worker as a child process of Gunicorn's master.

    A process, not a thread: the master forks web workers (a thread and its database
    connection would not survive a fork cleanly), and a crash in either leaves the other
    running. It is the same `rebound worker`, with the same settings (the environment).
    """
    return subprocess.Popen([sys.executable, "-c", "from course.cli import main; main()", "worker"])


def stop_grade_worker(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the worker and wait for its current delivery to finish (it records the outcome)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()

"""`rebound serve` on an empty machine prepares SQLite itself and prints where it runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_starts_on_an_empty_data_directory_and_answers(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REBOUND_")}
    env["REBOUND_DATA_DIR"] = str(tmp_path / "instance")
    server = subprocess.Popen(
        [sys.executable, "-c", "from course.cli import main; main()", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        announced = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "is running at" not in announced:
            announced += server.stdout.readline()
        assert f"Rebound (development) is running at http://127.0.0.1:{port}/" in announced
        assert f"Open the development LMS: http://localhost:{port}/dev-lms/" in announced
        assert (tmp_path / "instance" / "rebound.sqlite3").exists()

        for _ in range(50):
            try:
                ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        home = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert home.status_code == 200 and "Rebound" in home.text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()


def test_idle_connections_outlive_the_proxys_so_gunicorn_never_closes_one_under_a_request() -> None:
    from course.server import server_options

    options = server_options(host="127.0.0.1", port=8000, workers=2, threads=4, trust_proxy=True,
                             announce="", log_level="INFO", log_format="json")
    assert options["keepalive"] > 60  # nginx keeps idle upstream connections for 60 s by default
    assert options["worker_class"] == "gthread"  # idle keep-alive connections hold no thread

"""Run a benchmark's reference app (`module:factory`) under Gunicorn with the options
`rebound serve` uses (course/server.py), so only the application differs between targets."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from course.server import server_options


class ReferenceServer(BaseApplication):  # type: ignore[misc]
    """A Gunicorn application that builds the reference app in every worker."""

    def __init__(self, factory: str, options: dict[str, Any]) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        module, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(module), name)()  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("factory", help="module:function returning a Flask app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    options = server_options(
        host="127.0.0.1", port=args.port, workers=args.workers, threads=args.threads, trust_proxy=True,
        announce=f"{args.factory} on 127.0.0.1:{args.port}", log_level="INFO", log_format="json",
    )
    ReferenceServer(args.factory, options).run()


if __name__ == "__main__":
    main()

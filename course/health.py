"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

from course.access import public
from course.database import db, ping
from course.migrate import schema_status

bp = Blueprint("health", __name__)
logger = logging.getLogger("rebound.health")


@bp.route("/healthz")
@public
def healthz() -> Response:
    """The process is up and answering; says nothing about the database."""
    return jsonify(status="ok")


@bp.route("/readyz")
@public
def readyz() -> tuple[Response, int]:
    """Ready to serve: the database answers and its schema matches the code."""
    try:
        ping(db.engine)
        status = schema_status(db.engine)
    except SQLAlchemyError as error:
        reason = f"database unreachable: {type(error.orig or error).__name__}"
        logger.warning("not ready", extra={"reason": reason})
        return jsonify(status="unavailable", reason=reason), 503
    if not status.up_to_date:
        reason = (
            f"database schema is at {status.current or 'nothing'}, code needs {status.head}: "
            "run `rebound db upgrade`"
        )
        return jsonify(status="unavailable", reason=reason), 503
    return jsonify(status="ready", schema=status.current), 200

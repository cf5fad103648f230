"""The front door: what Rebound is and how each kind of user gets in."""

from __future__ import annotations

from flask import Blueprint, render_template

from course.access import public

bp = Blueprint("home", __name__)


@bp.route("/")
@public
def index() -> str:
    return render_template("home/index.html")

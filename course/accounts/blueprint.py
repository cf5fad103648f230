"""Sign-in pages for local staff accounts."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from course.access import ROLES, allow, current_roles, public
from course.accounts.forms import LoginForm, LogoutForm
from course.accounts.services import InvalidCredentials, SignInLocked, authenticate
from course.accounts.throttle import ThrottlePolicy
from course.config import Settings
from course.database import db, utcnow
from course.errors import abort_with

bp = Blueprint("accounts", __name__)


def _safe_next(target: str | None) -> str:
    """Only same-site paths are followed after sign-in, never another host."""
    if not target:
        return url_for("accounts.account")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("accounts.account")
    return target


def _policy() -> ThrottlePolicy:
    settings: Settings = current_app.config["REBOUND_SETTINGS"]
    window = timedelta(seconds=settings.login_lockout_seconds)
    return ThrottlePolicy(settings.login_max_failures, window=window, lockout=window)


@bp.route("/auth/login", methods=["GET", "POST"])
@public
def login() -> Response | str:
    form = LoginForm(next=request.args.get("next", ""))
    error = None
    if form.validate_on_submit():
        try:
            account = authenticate(
                db.session,
                username=form.username.data or "",
                password=form.password.data or "",
                remote_addr=request.remote_addr or "unknown",
                policy=_policy(),
                now=utcnow(),
            )
        except SignInLocked as locked:
            db.session.commit()
            minutes = max(1, round((locked.until - utcnow()).total_seconds() / 60))
            abort_with(
                429,
                f"Too many failed sign-in attempts. Sign-in is paused for about {minutes} "
                "minute(s); nothing else was changed.",
                retry_after=minutes * 60,
            )
        except InvalidCredentials:
            db.session.commit()
            error = "That username and password don't match an active account."
        else:
            db.session.commit()
            login_user(account)
            return redirect(_safe_next(form.next.data))
    status = 401 if error else 400 if form.errors else 200
    return render_template("accounts/login.html", form=form, error=error), status  # type: ignore[return-value]


@bp.route("/auth/logout", methods=["POST"])
@allow(*ROLES)
def logout() -> Response:
    if LogoutForm().validate_on_submit():
        logout_user()
    return redirect(url_for("home.index"))


@bp.route("/account")
@allow("trainer", "hr", "admin")
def account() -> str:
    return render_template(
        "accounts/account.html",
        account=current_user,
        roles=sorted(current_roles()),
        logout_form=LogoutForm(),
    )

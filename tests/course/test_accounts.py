"""Staff sign in with a password; forms need their CSRF token; guessing is throttled."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from course.accounts.passwords import hash_password
from course.accounts.services import AccountError, create_account
from course.database import db
from course.models import LocalAccount, LoginThrottle, Platform
from tests.conftest import DEFAULT_PASSWORD
from tests.helpers import csrf_token_from, sign_in


def test_staff_member_signs_in_and_lands_on_their_account(
    client: FlaskClient, make_account: Callable[..., LocalAccount]
) -> None:
    make_account(username="hana", role="hr")
    response = sign_in(client, "Hana ", DEFAULT_PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"
    page = client.get("/account").get_data(as_text=True)
    assert "hana" in page and "hr" in page


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(
    client: FlaskClient, make_account: Callable[..., LocalAccount]
) -> None:
    make_account(username="hana")
    response = sign_in(client, "hana", "not the password at all")
    assert response.status_code == 401
    assert "That username and password don&#39;t match an active account." in response.get_data(as_text=True)
    assert client.get("/account").status_code == 302  # still signed out


def test_unknown_username_gets_the_same_answer_as_a_wrong_password(client: FlaskClient, app: Flask) -> None:
    response = sign_in(client, "nobody", "whatever password")
    assert response.status_code == 401
    assert "don&#39;t match an active account" in response.get_data(as_text=True)


def test_form_without_csrf_token_is_refused_and_signs_nobody_in(
    client: FlaskClient, make_account: Callable[..., LocalAccount]
) -> None:
    make_account(username="hana")
    response = client.post("/auth/login", data={"username": "hana", "password": DEFAULT_PASSWORD})
    assert response.status_code == 400
    assert "security token was missing or expired" in response.get_data(as_text=True)
    assert client.get("/account").status_code == 302


def test_form_with_a_forged_csrf_token_is_refused(
    client: FlaskClient, make_account: Callable[..., LocalAccount]
) -> None:
    make_account(username="hana")
    data = {"csrf_token": "forged", "username": "hana", "password": DEFAULT_PASSWORD}
    assert client.post("/auth/login", data=data).status_code == 400


def test_repeated_failures_lock_the_account_even_for_the_right_password(
    app_factory: Callable[..., Flask], app: Flask, make_account: Callable[..., LocalAccount]
) -> None:
    app.config["REBOUND_SETTINGS"] = app.config["REBOUND_SETTINGS"].__class__(
        **{**vars(app.config["REBOUND_SETTINGS"]), "login_max_failures": 3}
    )
    make_account(username="hana")
    client = app.test_client()
    for _ in range(2):
        assert sign_in(client, "hana", "wrong guess number").status_code == 401
    locked = sign_in(client, "hana", "wrong guess number")
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.get_data(as_text=True)
    assert int(locked.headers["Retry-After"]) > 0
    right = sign_in(client, "hana", DEFAULT_PASSWORD)
    assert right.status_code == 429
    assert client.get("/account").status_code == 302


def test_lockout_is_kept_in_the_database_so_every_process_sees_it(
    app: Flask, make_account: Callable[..., LocalAccount]
) -> None:
    make_account(username="hana")
    client = app.test_client()
    for _ in range(5):
        sign_in(client, "hana", "wrong guess number")
    throttle = db.session.scalar(select(LoginThrottle).where(LoginThrottle.key == "account:hana"))
    assert throttle is not None and throttle.locked_until is not None


def test_successful_sign_in_clears_earlier_failures(
    client: FlaskClient, make_account: Callable[..., LocalAccount]
) -> None:
    make_account(username="hana")
    sign_in(client, "hana", "wrong guess number")
    assert sign_in(client, "hana", DEFAULT_PASSWORD).status_code == 302
    assert db.session.get(LoginThrottle, "account:hana") is None


def test_disabled_account_cannot_sign_in(client: FlaskClient, make_account: Callable[..., LocalAccount]) -> None:
    account = make_account(username="hana")
    account.active = False
    db.session.commit()
    assert sign_in(client, "hana", DEFAULT_PASSWORD).status_code == 401


def test_passwords_are_never_logged_or_echoed(
    client: FlaskClient, make_account: Callable[..., LocalAccount], caplog: pytest.LogCaptureFixture
) -> None:
    make_account(username="hana")
    secret = "Sup3r-Secret-Guess-9!"
    caplog.set_level(logging.DEBUG)
    response = sign_in(client, "hana", secret)
    assert secret not in response.get_data(as_text=True)
    assert secret not in caplog.text
    assert "sign-in failed" in caplog.text


def test_sign_in_only_follows_same_site_next_links(
    client: FlaskClient, make_account: Callable[..., LocalAccount]
) -> None:
    make_account(username="hana")
    response = sign_in(client, "hana", DEFAULT_PASSWORD, next="https://evil.example/steal")
    assert response.headers["Location"] == "/account"
    client.post("/auth/logout", data={"csrf_token": csrf_token_from(client.get("/account").get_data(as_text=True))})
    response = sign_in(client, "hana", DEFAULT_PASSWORD, next="//evil.example/")
    assert response.headers["Location"] == "/account"


def test_staff_page_sends_a_signed_out_visitor_to_sign_in(client: FlaskClient) -> None:
    response = client.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=/account")


def test_sign_out_needs_a_post_with_its_token(
    client: FlaskClient, make_account: Callable[..., LocalAccount]
) -> None:
    make_account(username="hana")
    sign_in(client, "hana", DEFAULT_PASSWORD)
    assert client.get("/auth/logout").status_code == 405
    assert client.post("/auth/logout").status_code == 400
    assert client.get("/account").status_code == 200
    token = csrf_token_from(client.get("/account").get_data(as_text=True))
    assert client.post("/auth/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/account").status_code == 302


def test_passwords_are_stored_as_argon2id_hashes(make_account: Callable[..., LocalAccount]) -> None:
    account = make_account(username="hana")
    assert account.password_hash.startswith("$argon2id$")
    assert DEFAULT_PASSWORD not in account.password_hash


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("ab", DEFAULT_PASSWORD, "Usernames are 3–80 characters"),
        ("bad name", DEFAULT_PASSWORD, "Usernames are 3–80 characters"),
        ("hana", "short", "at least 12 characters"),
        ("hana.long.name", "hana.long.name", "must not be the username"),
        ("hana", "aaaaaaaaaaaaaaaa", "too few characters"),
    ],
)
def test_account_rules_are_explained(
    make_platform: Callable[..., Platform], username: str, password: str, message: str
) -> None:
    with pytest.raises(AccountError, match=message):
        create_account(db.session, username=username, role="hr", password=password, platform=make_platform())


def test_hr_and_trainer_accounts_need_a_platform(app: Flask) -> None:
    with pytest.raises(AccountError, match="belongs to one LMS platform"):
        create_account(db.session, username="tess", role="trainer", password=DEFAULT_PASSWORD)


def test_usernames_are_unique_regardless_of_case(make_account: Callable[..., LocalAccount]) -> None:
    make_account(username="hana")
    with pytest.raises(AccountError, match="already exists"):
        make_account(username="HANA")


def test_old_hash_parameters_are_upgraded_at_sign_in(
    client: FlaskClient, make_account: Callable[..., LocalAccount]
) -> None:
    from argon2 import PasswordHasher

    account = make_account(username="hana")
    account.password_hash = PasswordHasher(time_cost=1, memory_cost=8192).hash(DEFAULT_PASSWORD)
    db.session.commit()
    sign_in(client, "hana", DEFAULT_PASSWORD)
    db.session.expire_all()
    refreshed = db.session.get(LocalAccount, account.id)
    assert refreshed is not None
    assert refreshed.password_hash != hash_password(DEFAULT_PASSWORD)
    assert "t=1," not in refreshed.password_hash

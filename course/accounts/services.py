"""Local staff accounts: creating them, signing in with throttling, changing passwords."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from course.accounts import throttle
from course.accounts.passwords import (
    WeakPassword,
    check_new_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from course.accounts.throttle import ThrottlePolicy
from course.models import LocalAccount, Platform
from course.models.people import LOCAL_ROLES

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@-]{2,79}$")
# A single address may try more often than a single account: offices share addresses.
ADDRESS_FAILURE_FACTOR = 4

logger = logging.getLogger("rebound.accounts")


class AccountError(ValueError):
    """An account can't be created or changed as asked; the message says why."""


class InvalidCredentials(Exception):
    """The username or password is wrong (deliberately not saying which)."""


@dataclass
class SignInLocked(Exception):
    """Too many recent failures: sign-in is refused until `until`."""

    until: datetime


def normalise_username(username: str) -> str:
    """Usernames compare case-insensitively and without surrounding spaces."""
    return username.strip().lower()


def create_account(
    session: Session,
    *,
    username: str,
    role: str,
    password: str,
    email: str | None = None,
    platform: Platform | None = None,
) -> LocalAccount:
    """Add a local account after checking every rule; raises AccountError with the reason."""
    username = normalise_username(username)
    if not USERNAME_PATTERN.match(username):
        raise AccountError(
            "Usernames are 3–80 characters: lowercase letters, digits and . _ @ -, "
            "starting with a letter or digit."
        )
    if role not in LOCAL_ROLES:
        raise AccountError(f"Unknown role {role!r}; use one of: {', '.join(LOCAL_ROLES)}.")
    if role != "admin" and platform is None:
        raise AccountError(
            f"A {role} account belongs to one LMS platform: name it with --platform "
            "(see `rebound platforms list`)."
        )
    if email is not None and email.strip() and "@" not in email:
        raise AccountError(f"{email!r} is not an email address.")
    try:
        check_new_password(password, username=username)
    except WeakPassword as error:
        raise AccountError(str(error)) from None
    taken = session.scalar(
        select(func.count()).select_from(LocalAccount).where(LocalAccount.username == username)
    )
    if taken:
        raise AccountError(f"An account named {username!r} already exists.")
    account = LocalAccount(
        username=username,
        role=role,
        email=(email or "").strip() or None,
        platform_id=platform.id if platform else None,
        password_hash=hash_password(password),
    )
    session.add(account)
    session.flush()
    logger.info("local account created", extra={"username": username, "role": role})
    return account


def authenticate(
    session: Session,
    *,
    username: str,
    password: str,
    remote_addr: str,
    policy: ThrottlePolicy,
    now: datetime,
) -> LocalAccount:
    """Return the account for these credentials, or raise InvalidCredentials / SignInLocked.

    A locked account or address is refused before the password is checked, so a
    guesser learns nothing more during a lockout.
    """
    username = normalise_username(username)
    account_key, address_key = f"account:{username}", f"address:{remote_addr}"
    address_policy = ThrottlePolicy(
        policy.max_failures * ADDRESS_FAILURE_FACTOR, policy.window, policy.lockout
    )
    for key in (account_key, address_key):
        until = throttle.locked_until(session, key, now)
        if until is not None:
            raise SignInLocked(until)

    account = session.scalar(select(LocalAccount).where(LocalAccount.username == username))
    valid = verify_password(account.password_hash if account else None, password)
    if not valid or account is None or not account.active:
        locks = [
            throttle.record_failure(session, account_key, policy, now),
            throttle.record_failure(session, address_key, address_policy, now),
        ]
        logger.warning(
            "sign-in failed", extra={"username": username, "remote_addr": remote_addr}
        )
        until = max((lock for lock in locks if lock is not None), default=None)
        if until is not None:
            raise SignInLocked(until)
        raise InvalidCredentials()

    throttle.clear(session, account_key)
    if needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
    account.last_login_at = now
    logger.info("sign-in succeeded", extra={"username": username, "remote_addr": remote_addr})
    return account


def set_password(session: Session, account: LocalAccount, password: str, now: datetime) -> None:
    """Replace an account's password after checking the rules."""
    try:
        check_new_password(password, username=account.username)
    except WeakPassword as error:
        raise AccountError(str(error)) from None
    account.password_hash = hash_password(password)
    account.password_changed_at = now
    throttle.clear(session, f"account:{account.username}")
    session.flush()


def find_platform(session: Session, reference: str) -> Platform:
    """A platform by numeric id, or by issuer when only one registration has it."""
    if reference.isdigit():
        platform = session.get(Platform, int(reference))
        if platform is None:
            raise AccountError(f"No platform has id {reference}; see `rebound platforms list`.")
        return platform
    matches = session.scalars(select(Platform).where(Platform.issuer == reference)).all()
    if not matches:
        raise AccountError(f"No platform has issuer {reference!r}; see `rebound platforms list`.")
    if len(matches) > 1:
        raise AccountError(
            f"Several platforms share issuer {reference!r}; name one by its id instead."
        )
    return matches[0]

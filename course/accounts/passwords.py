"""Password hashing (Argon2id) and the rules a new password must meet."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 512

_hasher = PasswordHasher()
# Verifying against this when an account doesn't exist keeps timing from revealing usernames.
_DUMMY_HASH = _hasher.hash("rebound-timing-equaliser")


class WeakPassword(ValueError):
    """A new password that breaks a rule; the message says which."""


def check_new_password(password: str, *, username: str) -> None:
    """Raise WeakPassword unless the password is long enough and not the username."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"Passwords need at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"Passwords can have at most {MAX_PASSWORD_LENGTH} characters.")
    if password.strip().lower() == username.strip().lower():
        raise WeakPassword("The password must not be the username.")
    if len(set(password)) < 4:
        raise WeakPassword("The password repeats too few characters to be safe.")


def hash_password(password: str) -> str:
    """An Argon2id hash of the password."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; spends the same effort when there is no hash."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)

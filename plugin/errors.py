"""Errors raised while validating LTI launches: values a person can act on."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


class LaunchError(Exception):
    """A launch was refused; says what was wrong and what to check.

    ``code`` is a short stable slug (for logs, metrics and tests), ``reason`` a plain
    sentence for the person who launched, ``hint`` what the LMS administrator should
    check, ``status`` the HTTP status the page should carry and ``details`` extra
    facts worth logging (never secrets, never the raw token).
    """

    code: str
    reason: str
    hint: str
    status: int
    details: Mapping[str, Any]

    def __init__(
        self,
        code: str,
        reason: str,
        hint: str,
        status: int = 400,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.hint = hint
        self.status = status
        self.details = MappingProxyType(dict(details or {}))

    def __repr__(self) -> str:
        return f"LaunchError(code={self.code!r}, status={self.status}, reason={self.reason!r})"

    def to_dict(self) -> dict[str, Any]:
        """Return the error as plain data, e.g. for a JSON error body or a log record."""
        return {
            "code": self.code,
            "reason": self.reason,
            "hint": self.hint,
            "status": self.status,
            "details": dict(self.details),
        }

"""Database-backed stores behind the pure LTI core: nonces, JWKS caches and the tool's keys."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from plugin.models import JwksCacheEntry, ToolKeyRecord, UsedNonce
from plugin.tool_keys import Keyring, ToolKey, generate_key


def _insert(session: Session):  # type: ignore[no-untyped-def]
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert


class DatabaseNonceStore:
    """Single-use nonces in a table with a unique (issuer, nonce) key."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def consume(self, issuer: str, nonce: str, expires_at: datetime) -> bool:
        """Use the nonce up; False when it had been used before (a replay)."""
        table = UsedNonce.__table__
        # One round trip instead of a savepoint, an INSERT and a release (bench/launch_bench.py).
        inserted = self.session.execute(
            _insert(self.session)(table)
            .values(issuer=issuer, nonce=nonce, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=[table.c.issuer, table.c.nonce])
            .returning(table.c.id)
        ).first()
        return inserted is not None

    def purge(self, now: datetime) -> int:
        """Forget nonces whose tokens have expired anyway."""
        result = self.session.execute(delete(UsedNonce).where(UsedNonce.expires_at < now))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class DatabaseJwksStore:
    """Platform key sets cached in the database, shared by every app process."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, jwks_url: str) -> tuple[str, datetime] | None:
        entry = self.session.get(JwksCacheEntry, jwks_url)
        if entry is None or entry.jwks_json is None or entry.fetched_at is None:
            return None
        return entry.jwks_json, entry.fetched_at

    def put(self, jwks_url: str, jwks_json: str, fetched_at: datetime) -> None:
        self.session.execute(
            update(JwksCacheEntry)
            .where(JwksCacheEntry.jwks_url == jwks_url)
            .values(jwks_json=jwks_json, fetched_at=fetched_at)
        )

    def try_begin_fetch(self, jwks_url: str, now: datetime, min_interval: timedelta) -> bool:
        """Claim the right to fetch now, atomically across processes (one fetch a minute)."""
        table = JwksCacheEntry.__table__
        statement = (
            _insert(self.session)(table)
            .values(jwks_url=jwks_url, attempted_at=now)
            .on_conflict_do_update(
                index_elements=[table.c.jwks_url],
                set_={"attempted_at": now},
                where=table.c.attempted_at <= now - min_interval,
            )
            .returning(table.c.jwks_url)
        )
        return self.session.execute(statement).first() is not None


def _key_password(secret_key: str) -> bytes:
    """The key that encrypts stored private keys, derived from the app's secret key."""
    digest = hashlib.sha256(b"rebound tool keys\x00" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)


class KeyringStore:
    """The tool's keyring in the database, private keys encrypted with the app's secret."""

    def __init__(self, session: Session, secret_key: str) -> None:
        self.session = session
        self.password = _key_password(secret_key)

    def load(self) -> Keyring:
        records = self.session.scalars(select(ToolKeyRecord).order_by(ToolKeyRecord.id)).all()
        return Keyring(
            tuple(
                ToolKey.from_pem(
                    record.private_key_pem,
                    created_at=record.created_at,
                    activated_at=record.activated_at,
                    retire_after=record.retire_after,
                    password=self.password,
                )
                for record in records
            )
        )

    def save(self, keyring: Keyring) -> None:
        """Store new keys and updated retirement times; drop keys no longer in the ring."""
        existing = {r.kid: r for r in self.session.scalars(select(ToolKeyRecord)).all()}
        wanted = {key.kid for key in keyring.keys}
        for kid, record in existing.items():
            if kid not in wanted:
                self.session.delete(record)
        for key in keyring.keys:
            record = existing.get(key.kid)
            if record is None:
                self.session.add(
                    ToolKeyRecord(
                        kid=key.kid,
                        private_key_pem=key.export_pem(self.password),
                        created_at=key.created_at,
                        activated_at=key.activated_at,
                        retire_after=key.retire_after,
                    )
                )
            else:
                record.retire_after = key.retire_after
        self.session.flush()

    def ensure(self, now: datetime) -> Keyring:
        """The keyring, with a first key generated if there is none that may sign."""
        keyring = self.load()
        if any(key.may_sign(now) for key in keyring.keys):
            return keyring
        keyring = Keyring((*keyring.keys, generate_key(now)))
        self.save(keyring)
        return keyring

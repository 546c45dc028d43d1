"""API keys: created once, stored hashed, listed by prefix, revoked."""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa

from memberlab._errors import DataValidationError
from memberlab.store import _schema as s
from memberlab.store._base import StoreBase
from memberlab.store._records import KEY_PREFIX as _KEY_PREFIX
from memberlab.store._records import SCOPES, ApiKeyRecord
from memberlab.store._records import hash_key as _hash_key

_KEY_SCOPE = sa.select(s.api_keys.c.scope, s.api_keys.c.revoked).where(
    s.api_keys.c.key_hash == sa.bindparam("key_hash")
)


class KeysMixin(StoreBase):
    """API keys: created once, stored hashed, listed by prefix, revoked."""

    def create_api_key(self, scope: str, *, label: str = "") -> str:
        """Create a key with ``scope`` in ``SCOPES``; returns it (only its hash is kept)."""
        if scope not in SCOPES:
            raise DataValidationError(f"scope == {scope!r}, must be one of {list(SCOPES)}.")
        key = f"{_KEY_PREFIX}_{scope}_{secrets.token_urlsafe(24)}"
        with self._tx() as conn:
            conn.execute(
                sa.insert(s.api_keys).values(
                    key_hash=_hash_key(key),
                    prefix=key[:16],
                    scope=scope,
                    label=label,
                    created_at=time.time(),
                    revoked=False,
                )
            )
        return key

    def api_key_scope(self, key: str) -> str | None:
        """The scope of a valid, unrevoked key; ``None`` otherwise."""
        with self._tx(write=False) as conn:
            row = conn.execute(_KEY_SCOPE, {"key_hash": _hash_key(key)}).first()
        if row is None or row.revoked:
            return None
        return str(row.scope)

    def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every key (never the key itself: its prefix, scope, label and state), oldest first."""
        k = s.api_keys
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(k.c.prefix, k.c.scope, k.c.label, k.c.created_at, k.c.revoked).order_by(
                    k.c.created_at, k.c.prefix
                )
            ).all()
        return [
            ApiKeyRecord(r.prefix, r.scope, r.label, float(r.created_at), bool(r.revoked))
            for r in rows
        ]

    def revoke_api_key(self, key: str) -> int:
        """Revoke a key, given in full or by the prefix :meth:`list_api_keys` shows.

        Returns the number of keys revoked (0: no such key, or already revoked). A prefix
        that matches several keys is refused with :class:`DataValidationError`.
        """
        k = s.api_keys
        with self._tx() as conn:
            if key.startswith(_KEY_PREFIX + "_") and len(key) > 16:
                where = k.c.key_hash == _hash_key(key)
            else:
                n = conn.execute(
                    sa.select(sa.func.count()).select_from(k).where(k.c.prefix == key)
                ).scalar()
                if int(n or 0) > 1:
                    raise DataValidationError(
                        f"key prefix {key!r} matches {n} keys; give the whole key."
                    )
                where = k.c.prefix == key
            r = conn.execute(sa.update(k).where(where, k.c.revoked.is_(False)).values(revoked=True))
        return int(r.rowcount or 0)

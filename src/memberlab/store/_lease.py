"""Named leases: one trainer at a time across every process and machine."""

from __future__ import annotations

import time

import sqlalchemy as sa

from memberlab.store import _schema as s
from memberlab.store._base import StoreBase


class LeaseMixin(StoreBase):
    """Named leases: one trainer at a time across every process and machine."""

    def try_lease(self, holder: str, *, ttl: float = 30.0, name: str = "trainer") -> bool:
        """Take the named lease if it is free, expired or already ours (UPDATE ... WHERE)."""
        now = time.time()
        lt = s.leases
        with self._tx() as conn:
            r = conn.execute(
                sa.update(lt)
                .where(
                    lt.c.name == name,
                    sa.or_(lt.c.holder.is_(None), lt.c.expires_at < now, lt.c.holder == holder),
                )
                .values(holder=holder, expires_at=now + ttl)
            )
            if r.rowcount == 0:
                exists = conn.execute(sa.select(lt.c.name).where(lt.c.name == name)).first()
                if exists is None:
                    conn.execute(
                        sa.insert(lt).values(name=name, holder=holder, expires_at=now + ttl)
                    )
                    return True
        return bool(r.rowcount)

    def release_lease(self, holder: str, *, name: str = "trainer") -> None:
        lt = s.leases
        with self._tx() as conn:
            conn.execute(
                sa.update(lt)
                .where(lt.c.name == name, lt.c.holder == holder)
                .values(holder=None, expires_at=0.0)
            )

"""Callout items (and any other kind): upsert, retire, list."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from memberlab.store import _schema as s
from memberlab.store._base import StoreBase
from memberlab.store._records import ItemRecord


class ItemsMixin(StoreBase):
    """Callout items (and any other kind): upsert, retire, list."""

    def upsert_item(
        self, item_id: str, attributes: Mapping[str, Any], *, kind: str = "callouts"
    ) -> bool:
        """Create or update (and reactivate) an item; returns True if it was created."""
        now = time.time()
        with self._tx() as conn:
            exists = conn.execute(
                sa.select(s.items.c.item_id).where(
                    s.items.c.kind == kind, s.items.c.item_id == item_id
                )
            ).first()
            if exists is None:
                conn.execute(
                    sa.insert(s.items).values(
                        kind=kind,
                        item_id=item_id,
                        attributes=dict(attributes),
                        active=True,
                        created_at=now,
                        updated_at=now,
                    )
                )
                return True
            conn.execute(
                sa.update(s.items)
                .where(s.items.c.kind == kind, s.items.c.item_id == item_id)
                .values(attributes=dict(attributes), active=True, updated_at=now)
            )
            return False

    def retire_item(self, item_id: str, *, kind: str = "callouts") -> bool:
        """Mark an item retired; returns False if no such item exists."""
        with self._tx() as conn:
            r = conn.execute(
                sa.update(s.items)
                .where(s.items.c.kind == kind, s.items.c.item_id == item_id)
                .values(active=False, updated_at=time.time())
            )
        return bool(r.rowcount)

    def list_items(self, *, kind: str = "callouts", active_only: bool = False) -> list[ItemRecord]:
        q = sa.select(s.items).where(s.items.c.kind == kind).order_by(s.items.c.item_id)
        if active_only:
            q = q.where(s.items.c.active.is_(True))
        with self._tx(write=False) as conn:
            rows = conn.execute(q).all()
        return [
            ItemRecord(r.item_id, dict(r.attributes), bool(r.active), r.created_at, r.updated_at)
            for r in rows
        ]

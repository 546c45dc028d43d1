"""Versioned policy snapshots (opaque bytes) per kind and space."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from memberlab._errors import StaleSnapshotError
from memberlab.store import _schema as s
from memberlab.store._base import StoreBase
from memberlab.store._records import EVENT_CHUNK as _EVENT_CHUNK
from memberlab.store._records import Snapshot

# Hot-path statements are built once (building a statement costs more than running it).
_LATEST_VERSION = sa.select(sa.func.max(s.snapshots.c.version)).where(
    s.snapshots.c.kind == sa.bindparam("kind"), s.snapshots.c.space == sa.bindparam("space")
)


class SnapshotsMixin(StoreBase):
    """Versioned policy snapshots (opaque bytes) per kind and space."""

    def latest_version(self, kind: str, space: str = "") -> int:
        """Version of the newest snapshot (0 if none): one indexed lookup, cheap to poll."""
        with self._tx(write=False) as conn:
            v = conn.execute(_LATEST_VERSION, {"kind": kind, "space": space}).scalar()
        return int(v or 0)

    def load_snapshot(self, kind: str, space: str = "") -> Snapshot | None:
        t = s.snapshots
        with self._tx(write=False) as conn:
            r = conn.execute(
                sa.select(t)
                .where(t.c.kind == kind, t.c.space == space)
                .order_by(t.c.version.desc())
                .limit(1)
            ).first()
        if r is None:
            return None
        return Snapshot(r.kind, r.space, r.version, bytes(r.data), r.spec, r.reason, r.created_at)

    def spaces(self, kind: str) -> list[str]:
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(s.snapshots.c.space).where(s.snapshots.c.kind == kind).distinct()
            ).all()
        return sorted(r.space for r in rows)

    def publish(
        self,
        kind: str,
        data: bytes,
        *,
        base_version: int,
        space: str = "",
        spec: Any = None,
        reason: str = "train",
        closed: Sequence[tuple[str, str, float]] = (),
        keep: int = 20,
    ) -> int:
        """Publish snapshot ``base_version + 1`` and close ``closed`` impressions, atomically.

        ``closed`` holds ``(decision_id, item_id, reward)``. Raises
        :class:`StaleSnapshotError` if that version already exists (another writer won).
        Old snapshots beyond the newest ``keep`` are deleted.
        """
        version = base_version + 1
        now = time.time()
        t = s.snapshots
        try:
            with self._tx() as conn:
                latest = conn.execute(
                    sa.select(sa.func.max(t.c.version)).where(t.c.kind == kind, t.c.space == space)
                ).scalar()
                if int(latest or 0) != base_version:
                    raise StaleSnapshotError(
                        f"snapshot {kind}/{space} is at version {latest}, not {base_version}."
                    )
                conn.execute(
                    sa.insert(t).values(
                        kind=kind,
                        space=space,
                        version=version,
                        data=data,
                        spec=spec,
                        reason=reason,
                        created_at=now,
                    )
                )
                ph = self.sql.placeholder
                for k in range(0, len(closed), _EVENT_CHUNK):  # join on the primary key
                    chunk = closed[k : k + _EVENT_CHUNK]
                    rows = ", ".join([f"({ph}, {ph}, {ph})"] * len(chunk))
                    params: list[Any] = [v for did, iid, rw in chunk for v in (did, iid, rw)]
                    conn.exec_driver_sql(
                        f"WITH v(d, i, r) AS (VALUES {rows}) "
                        f"UPDATE impressions SET status = 1, reward = v.r, closed_at = {ph} "
                        "FROM v WHERE impressions.decision_id = v.d "
                        "AND impressions.item_id = v.i AND impressions.status = 0",
                        (*params, now),
                    )
                self._set_meta(conn, f"last_publish/{kind}", repr(now))
                conn.execute(
                    sa.delete(t).where(
                        t.c.kind == kind, t.c.space == space, t.c.version <= version - keep
                    )
                )
        except sa.exc.IntegrityError as exc:
            raise StaleSnapshotError(f"snapshot {kind}/{space} v{version} exists.") from exc
        return version

    def retire_space(self, kind: str, space: str) -> int:
        """Delete the snapshots of ``(kind, space)`` and drop its open impressions.

        Logged decisions and events stay in the log; dropped impressions get status 2
        (never trained on). Returns the number dropped.
        """
        i, t = s.impressions, s.snapshots
        with self._tx() as conn:
            r = conn.execute(
                sa.update(i)
                .where(i.c.kind == kind, i.c.space == space, i.c.status == 0)
                .values(status=2, closed_at=time.time())
            )
            conn.execute(sa.delete(t).where(t.c.kind == kind, t.c.space == space))
        return int(r.rowcount or 0)

"""Read-only export of logged decisions, one row per served choice, in bounded memory.

A row joins an impression (one served item of a callouts decision, or the one layout of
a layout decision) to its decision: decision id, time, unit id (when the request sent
one), the context (as JSON and flattened into ``ctx.<key>`` columns), the candidates,
the served item or layout, its position, the logged propensity, policy version, seed,
reward and status (``pending`` while the attribution window is open, ``closed`` once the
trainer applied it). Rows come in keyset-paged batches ordered by the impressions'
primary key ``(decision_id, item_id)`` (an index range scan per page, never a sort;
readers order by ``ts``), so memory stays bounded by the batch size whatever the table
size, and a page-through sees every row that existed when it started.
:func:`export_page` is the same query one page at a time (for an HTTP endpoint);
:func:`export_parquet` streams every page to a Parquet file.

Candidates are the list the service logged with the decision (schema 2: the request's
explicit list, or the serving catalogue's active items, logged in full for the first
decision from each catalogue and once per 1,000 decisions after, and by reference to
such a copy otherwise; references are resolved here). Decisions logged before the
service recorded them have none; for those this module reconstructs the items active at
that moment from the items table (items created by then and not retired before, by the
wall clock of the server, whatever time the client sent). That reconstruction is an
approximation: the serving catalogue lags the items table until the trainer publishes,
and the table keeps only an item's latest state (an item retired and re-activated looks
active throughout). The file's metadata says which (``candidates_source``: ``logged``,
``catalog`` or ``logged, else catalog``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from memberlab._errors import DataValidationError
from memberlab.store import _schema as s
from memberlab.store._ledger import first_plan

__all__ = [
    "EARLY_HOLD",
    "EARLY_HOLD_KEY",
    "EXPORT_SCHEMA_VERSION",
    "ExportCursor",
    "export_page",
    "export_parquet",
    "iter_export",
    "kind_hint",
    "parse_time",
    "record_early_hold",
    "recorded_early_hold",
]

log = logging.getLogger(__name__)

EXPORT_SCHEMA_VERSION = 1
_KINDS = ("callouts", "layouts", "value")
#: kinds whose rows are served callout items (the value objective serves callouts too)
_ITEM_KINDS = ("callouts", "value")
#: the meta-table key under which the value objective's service records its
#: ``early_hold`` (seconds a conversion may precede its decision and count), so the
#: export reads a value row's plan as the trainer did
EARLY_HOLD_KEY = "value.early_hold"
#: the service's default ``early_hold``, for a database no value service has recorded
EARLY_HOLD = 60.0


def record_early_hold(store: Any, seconds: float) -> None:
    """Record the service's configured ``early_hold`` (the value objective's services
    call this at start-up; the newest start wins)."""
    store.set_meta(EARLY_HOLD_KEY, repr(float(seconds)))


def recorded_early_hold(store: Any) -> float:
    """The ``early_hold`` the service recorded, else the service's default (60 s)."""
    raw = store.get_meta(EARLY_HOLD_KEY)
    try:
        return EARLY_HOLD if raw is None else float(raw)
    except ValueError:
        log.warning("meta %s == %r is not a number; using %g s", EARLY_HOLD_KEY, raw, EARLY_HOLD)
        return EARLY_HOLD


def _early_hold(store: Any, kind: str, early_hold: float | None) -> float:
    if kind != "value":
        return 0.0  # only value rows read events (their plan)
    hold = recorded_early_hold(store) if early_hold is None else float(early_hold)
    if not (math.isfinite(hold) and hold >= 0):
        raise DataValidationError(f"early_hold == {early_hold!r}, must be a number >= 0.")
    return hold


@dataclass(frozen=True, slots=True)
class ExportCursor:
    """Where the next page starts: the sort key of the last row returned."""

    ts: float
    decision_id: str
    item_id: str

    def encode(self) -> str:
        return json.dumps([self.ts, self.decision_id, self.item_id], separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> ExportCursor:
        try:
            ts, did, item = json.loads(text)
            return cls(float(ts), str(did), str(item))
        except (ValueError, TypeError) as exc:
            raise DataValidationError(
                f"cursor == {text!r} is not a cursor of this export."
            ) from exc


def parse_time(text: str | None, name: str) -> float | None:
    """Epoch seconds from an ISO 8601 time (UTC when it has no zone) or a number of
    seconds, for the ``since``/``until`` filters; None or "" is no filter."""
    from datetime import UTC, datetime

    if text is None or text == "":
        return None
    try:
        t = float(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise DataValidationError(
                f"{name} == {text!r}: must be an ISO 8601 time or epoch seconds."
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    if not math.isfinite(t):
        raise DataValidationError(f"{name} == {text!r}: must be a finite number of seconds.")
    return t


def kind_hint(
    store: Any,
    kind: str,
    *,
    with_arm: bool = False,
    space: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> str | None:
    """Where the callout decisions are when ``kind`` has none: callouts are logged as
    kind ``callouts`` under the click objective and as ``value`` under the value
    objective, so a reader asking for the other one would see an empty answer. Returns
    a one-line note naming the kind that has decisions in the same filters (with an
    experiment arm, if ``with_arm``), else None. Call it only for an empty answer."""
    if kind not in _ITEM_KINDS:
        return None
    other = "value" if kind == "callouts" else "callouts"
    where = {"with_arm": with_arm, "space": space, "since": since, "until": until}
    if not store.has_decisions(other, **where):
        return None
    made = "the value objective" if other == "value" else "the click objective"
    return (
        f"no decision of kind {kind!r} here, but there are decisions of kind {other!r} "
        f"(callouts served by {made}): ask for kind {other!r}."
    )


def _check(kind: str, since: float | None, until: float | None) -> None:
    if kind not in _KINDS:
        raise DataValidationError(f"kind == {kind!r}, must be one of {_KINDS}.")
    if since is not None and until is not None and until < since:
        raise DataValidationError(f"until == {until} is before since == {since}.")


def _query(
    kind: str,
    space: str | None,
    since: float | None,
    until: float | None,
    after: ExportCursor | None,
    limit: int,
    early_hold: float = 0.0,
) -> sa.Select[Any]:
    i, d = s.impressions, s.decisions
    cols = [
        i.c.decision_id,
        i.c.item_id,
        i.c.space,
        i.c.propensity,
        i.c.ts,
        i.c.status,
        i.c.reward,
        i.c.policy_version.label("imp_version"),
        d.c.context,
        d.c.served,
        d.c.policy_version,
        d.c.seed,
        d.c.created_at.label("logged_at"),
    ]
    # columns a newer schema may add (the holdout's unit id and arm)
    for extra in ("unit_id", "assignment", "candidates"):
        if extra in d.c:
            cols.append(d.c[extra])
    if kind == "value":  # the plan of the first conversion in the window, as trained
        cols.append(first_plan(early_hold))
    q = sa.select(*cols).select_from(i.join(d, d.c.decision_id == i.c.decision_id))
    q = q.where(i.c.kind == kind)
    if space is not None:
        q = q.where(i.c.space == space)
    if since is not None:
        q = q.where(i.c.ts >= since)
    if until is not None:
        q = q.where(i.c.ts < until)
    if after is not None:
        q = q.where(
            sa.tuple_(i.c.ts, i.c.decision_id, i.c.item_id)
            > sa.tuple_(
                sa.literal(after.ts), sa.literal(after.decision_id), sa.literal(after.item_id)
            )
        )
    return q.order_by(i.c.ts, i.c.decision_id, i.c.item_id).limit(limit)


def _catalog(store: Any, kind: str) -> list[dict[str, Any]]:
    t = s.items
    kind = "callouts" if kind in _ITEM_KINDS else kind  # value decisions serve callout items
    with store._tx(write=False) as conn:
        rows = conn.execute(sa.select(t).where(t.c.kind == kind).order_by(t.c.item_id)).all()
    return [
        {
            "item_id": r.item_id,
            "attributes": dict(r.attributes),
            "active": bool(r.active),
            "created_at": float(r.created_at),
            "updated_at": float(r.updated_at),
        }
        for r in rows
    ]


def _candidates_at(catalog: list[dict[str, Any]], ts: float) -> list[str]:
    return [
        it["item_id"]
        for it in catalog
        if it["created_at"] <= ts and (it["active"] or it["updated_at"] > ts)
    ]


class _CandidateLists:
    """The candidate list of each exported decision.

    A logged list is taken as it is; a full catalogue list (``{"key", "ids"}``) too,
    remembered by its key; a reference (``{"ref": key}``) is resolved from the lists
    remembered so far, else by looking the key up in the decisions table (once per key;
    at most :attr:`KEEP` lists are held). Decisions logged without a list, or whose
    reference has no full copy left, get the items active at the time by the items
    table (see the module docstring). A reference without a full copy (a dangling
    reference: its copy was deleted, or, before the service waited for a full copy to
    commit, its decision failed to) is no error: ``of`` says so, and the export counts
    and reports those rows."""

    KEEP = 64

    def __init__(self, store: Any, kind: str) -> None:
        self.store, self.kind = store, kind
        self.catalog = _catalog(store, kind)
        self._known: OrderedDict[str, list[str] | None] = OrderedDict()

    def _remember(self, key: str, ids: list[str] | None) -> None:
        self._known[key] = ids
        self._known.move_to_end(key)
        while len(self._known) > self.KEEP:
            self._known.popitem(last=False)

    def _resolve(self, key: str) -> list[str] | None:
        if key in self._known:
            self._known.move_to_end(key)
            return self._known[key]
        d = s.decisions
        q = (
            sa.select(d.c.candidates)
            .where(d.c.kind == self.kind, d.c.candidates["key"].as_string() == key)
            .limit(1)
        )
        with self.store._tx(write=False) as conn:
            found = conn.execute(q).scalar()
        if isinstance(found, str):
            found = json.loads(found)
        ids = [str(x) for x in found["ids"]] if isinstance(found, dict) else None
        self._remember(key, ids)
        return ids

    def of(self, logged: Any, logged_at: float, served: list[str]) -> tuple[list[str], bool, bool]:
        """The decision's candidates, whether they come from its log, and whether its
        log held a reference that has no full copy."""
        if isinstance(logged, str):
            logged = json.loads(logged)
        found: list[str] | None = None
        if isinstance(logged, list):
            found = [str(x) for x in logged]
        elif isinstance(logged, dict) and "ids" in logged:
            found = [str(x) for x in logged["ids"]]
            if str(logged.get("key")) not in self._known:
                self._remember(str(logged.get("key")), found)
        elif isinstance(logged, dict) and "ref" in logged:
            found = self._resolve(str(logged["ref"]))
        dangling = found is None and isinstance(logged, dict) and "ref" in logged
        cands = list(found) if found is not None else _candidates_at(self.catalog, logged_at)
        for x in served:  # served items were candidates, whatever the catalogue says
            if x not in cands:
                cands.append(x)
        return cands, found is not None, dangling


#: the warning of an export with rows whose candidate list reference has no full copy
_DANGLING = (
    "%d exported row(s) refer to a logged candidate list that has no full copy in the "
    "decisions table; their candidates are the items active at the time (items table)"
)


def _row(r: Any, kind: str, lists: _CandidateLists) -> dict[str, Any]:
    ctx = r.context if isinstance(r.context, dict) else json.loads(r.context)
    served = r.served if not isinstance(r.served, str) else json.loads(r.served)
    from_log = dangling = False
    if kind in _ITEM_KINDS:
        item = r.item_id
        position = served.index(item) if item in served else 0
        # wall clock, as the items' times
        cands, from_log, dangling = lists.of(
            r._mapping.get("candidates"), float(r.logged_at), served
        )
        candidates: list[str] | None = cands
    else:
        item = json.dumps(served, sort_keys=True, separators=(",", ":"))
        position = 0
        candidates = None
    closed = int(r.status) == 1
    prop = r.propensity
    m = r._mapping
    unit = m.get("unit_id")
    if unit is None:
        unit = ctx.get("unit_id") if isinstance(ctx.get("unit_id"), str) else None
    return {
        "decision_id": r.decision_id,
        "ts": float(r.ts),
        "unit_id": unit,
        "assignment": m.get("assignment"),
        "kind": kind,
        "space": r.space,
        "context": json.dumps(ctx, sort_keys=True, separators=(",", ":")),
        "_ctx": ctx,
        "candidates": candidates,
        "item": item,
        "position": int(position),
        "propensity": None if prop is None or not math.isfinite(prop) else float(prop),
        "policy_version": int(r.policy_version),
        "seed": int(r.seed),
        "reward": float(r.reward) if closed and r.reward is not None else None,
        "status": "closed" if closed else "pending",
        "_logged_candidates": from_log,
        "_dangling": dangling,
        # value rows: the plan the impression converted to (None without a conversion)
        "plan": m.get("plan") if closed else None,
    }


def iter_export(
    store: Any,
    *,
    kind: str = "callouts",
    space: str | None = None,
    since: float | None = None,
    until: float | None = None,
    batch_size: int = 5_000,
    early_hold: float | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Batches of export rows (dicts; ``_ctx`` holds the context dict), in primary-key
    order.

    Parameters
    ----------
    store : Store
    kind : {"callouts", "layouts", "value"}
        ``"value"``: decisions of the value objective (callout rows; ``reward`` is the
        click, ``plan`` the plan of the first conversion in the window).
    space : str, optional
        Layout space (or ``""`` for callouts); default every space.
    since, until : float, optional
        Epoch seconds: rows with ``since <= ts < until``.
    batch_size : int
        Rows per query; memory is bounded by it.
    early_hold : float, optional
        Seconds a conversion may precede its decision and still give a value row its plan;
        default: the ``early_hold`` the value service recorded (:func:`recorded_early_hold`),
        so the plan is the one the trainer learned.
    """
    _check(kind, since, until)
    if batch_size < 1:
        raise DataValidationError(f"batch_size == {batch_size}, must be >= 1.")
    hold = _early_hold(store, kind, early_hold)
    lists = _CandidateLists(store, kind)
    after: ExportCursor | None = None
    while True:
        with store._tx(write=False) as conn:
            rows = conn.execute(_query(kind, space, since, until, after, batch_size, hold)).all()
        if not rows:
            return
        yield [_row(r, kind, lists) for r in rows]
        last = rows[-1]
        after = ExportCursor(float(last.ts), last.decision_id, last.item_id)
        if len(rows) < batch_size:
            return


def export_page(
    store: Any,
    *,
    kind: str = "callouts",
    space: str | None = None,
    since: float | None = None,
    until: float | None = None,
    cursor: str | None = None,
    limit: int = 1000,
    early_hold: float | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of export rows (JSON-ready) and the cursor of the next (None at the end).

    For the admin endpoint that pages through the export: pass the returned cursor back
    to get the next page. ``early_hold`` as for :func:`iter_export`.
    """
    _check(kind, since, until)
    if not 1 <= limit <= 100_000:
        raise DataValidationError(f"limit == {limit}, must be in [1, 100000].")
    after = ExportCursor.decode(cursor) if cursor else None
    hold = _early_hold(store, kind, early_hold)
    lists = _CandidateLists(store, kind)
    with store._tx(write=False) as conn:
        rows = conn.execute(_query(kind, space, since, until, after, limit, hold)).all()
    out = []
    dangling = 0
    for r in rows:
        row = _row(r, kind, lists)
        row["context"] = row.pop("_ctx")
        del row["_logged_candidates"]
        dangling += row.pop("_dangling")
        out.append(row)
    if dangling:
        log.warning(_DANGLING, dangling)
    nxt = None
    if len(rows) == limit:
        last = rows[-1]
        nxt = ExportCursor(float(last.ts), last.decision_id, last.item_id).encode()
    return out, nxt


def _first_pass(store: Any, kind: str, **kw: Any) -> tuple[dict[str, str], int, str | None, int]:
    """Each context key's column type over the export (number, list or string), the
    longest ranked list, where the candidates come from, and the rows whose logged
    reference had no full copy."""
    kinds: dict[str, set[str]] = {}
    len_list = 1
    sources: set[bool] = set()
    dangling = 0
    for batch in iter_export(store, kind=kind, **kw):
        for row in batch:
            len_list = max(len_list, row["position"] + 1)
            sources.add(row["_logged_candidates"])
            dangling += row["_dangling"]
            for k, v in row["_ctx"].items():
                if isinstance(v, bool) or v is None:
                    t = "string"
                elif isinstance(v, int | float):
                    t = "number"
                elif isinstance(v, list):
                    t = "list"
                else:
                    t = "string"
                kinds.setdefault(k, set()).add(t)
    out = {k: (next(iter(t)) if len(t) == 1 else "string") for k, t in sorted(kinds.items())}
    source = None
    if kind in _ITEM_KINDS:
        source = "logged, else catalog" if len(sources) == 2 else "catalog"
        if sources <= {True}:
            source = "logged"
    return out, len_list, source, dangling


def _ctx_value(v: Any, t: str) -> Any:
    if v is None:
        return None
    if t == "number":
        return float(v)
    if t == "list":
        return [str(x) for x in v]
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def export_parquet(
    store: Any,
    path: str | os.PathLike[str],
    *,
    kind: str = "callouts",
    space: str | None = None,
    since: float | None = None,
    until: float | None = None,
    batch_size: int = 5_000,
    early_hold: float | None = None,
) -> int:
    """Write the export to a Parquet file in batches; returns the rows written.

    Two passes over the rows, each in bounded memory: the first finds the context keys
    and their types (so the file has one fixed schema), the second writes row groups
    with :class:`pyarrow.parquet.ParquetWriter`. The file's metadata (key
    ``memberlab``) holds the filters, the item catalogue, ``len_list`` and, for value
    rows, the ``early_hold`` their plans were read with (see :func:`iter_export`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    hold = _early_hold(store, kind, early_hold)
    kw: dict[str, Any] = {"space": space, "since": since, "until": until, "early_hold": hold}
    ctx_kinds, len_list, source, dangling = _first_pass(store, kind, batch_size=batch_size, **kw)
    if dangling:
        log.warning(_DANGLING, dangling)
    ctx_types = {"number": pa.float64(), "list": pa.list_(pa.string()), "string": pa.string()}
    fields = [
        pa.field("decision_id", pa.string()),
        pa.field("ts", pa.float64()),
        pa.field("time", pa.timestamp("us", tz="UTC")),
        pa.field("unit_id", pa.string()),
        pa.field("assignment", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("space", pa.string()),
        pa.field("context", pa.string()),
        *[pa.field(f"ctx.{k}", ctx_types[t]) for k, t in ctx_kinds.items()],
        pa.field("candidates", pa.list_(pa.string())),
        pa.field("item", pa.string()),
        pa.field("position", pa.int32()),
        pa.field("propensity", pa.float64()),
        pa.field("policy_version", pa.int64()),
        pa.field("seed", pa.int64()),
        pa.field("reward", pa.float64()),
        pa.field("status", pa.string()),
        pa.field("plan", pa.string()),
    ]
    catalog = _catalog(store, kind)
    meta = {
        "schema": EXPORT_SCHEMA_VERSION,
        "kind": kind,
        "space": space,
        "since": since,
        "until": until,
        "items": catalog if kind in _ITEM_KINDS else [],
        "candidates_source": source,
        "dangling_references": dangling,
        "context_kinds": ctx_kinds,
        "len_list": len_list,
        **({"early_hold": hold} if kind == "value" else {}),
    }
    schema = pa.schema(fields).with_metadata({"memberlab": json.dumps(meta)})
    n = 0
    tmp = f"{os.fspath(path)}.part"
    writer = pq.ParquetWriter(tmp, schema)
    try:
        for batch in iter_export(store, kind=kind, batch_size=batch_size, **kw):
            cols: dict[str, list[Any]] = {f.name: [] for f in fields}
            for row in batch:
                ctx = row["_ctx"]
                for name in cols:
                    if name.startswith("ctx."):
                        key = name[4:]
                        cols[name].append(_ctx_value(ctx.get(key), ctx_kinds[key]))
                    elif name == "time":
                        cols[name].append(int(row["ts"] * 1e6))
                    else:
                        cols[name].append(row[name])
            writer.write_table(pa.table(cols, schema=schema))
            n += len(batch)
    finally:
        writer.close()
    os.replace(tmp, path)
    log.info("exported %d %s rows to %s", n, kind, path)
    return n

"""Checks of the service's configuration against the items it serves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from memberlab.store import ItemRecord

__all__ = ["check_crosses", "known_attributes"]


def known_attributes(items: Iterable[ItemRecord]) -> list[str]:
    """Sorted attribute names of the callout items (active or retired)."""
    names: set[str] = set()
    for item in items:
        if item.item_id and isinstance(item.attributes, dict):
            names.update(item.attributes)
    return sorted(names)


def check_crosses(crosses: Sequence[str], items: Iterable[ItemRecord]) -> str | None:
    """What is wrong with ``crosses`` given the items, or ``None``.

    A cross ``"context_key:attribute"`` whose attribute no item has can never fire. With
    no items yet nothing can be said (they may come later), so ``None``.
    """
    known = known_attributes(items)
    if not known:
        return None
    bad = [c for c in crosses if c.split(":", 1)[-1] not in known]
    if not bad:
        return None
    return (
        f"cross(es) {bad} name an item attribute no item has, so they would never fire; "
        f"known attributes: {known}."
    )

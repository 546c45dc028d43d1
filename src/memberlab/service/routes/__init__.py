"""HTTP routes, one module per resource; each takes what it needs through ``deps``."""

from memberlab.service.routes import admin, choice, events, items, keys, layouts, ops, pages

__all__ = ["admin", "choice", "events", "items", "keys", "layouts", "ops", "pages"]

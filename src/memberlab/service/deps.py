"""What the routes need, built once per app and injected with FastAPI ``Depends``.

:class:`Services` holds the settings, the store, the policy holders, the trainer and the
key checker. Routes take it through :func:`services`; their logic can be called without
HTTP by passing a :class:`Services` directly (see ``tests/service/test_routes.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from memberlab._errors import AuthError, ForbiddenError
from memberlab.service._choice import ChoiceHolder
from memberlab.service._experiment import Experiment
from memberlab.service._layouts import LayoutsHolder
from memberlab.service._policy import CalloutsHolder, PolicyHolder, serving_holder
from memberlab.service._trainer import Trainer
from memberlab.service._value import ValueHolder
from memberlab.service.settings import Settings
from memberlab.store import Store

__all__ = [
    "AdminKey",
    "DecideKey",
    "KeyCache",
    "Services",
    "Svc",
    "build_services",
    "require_admin",
    "require_decide",
    "services",
]


class KeyCache:
    """API key scopes read from the store and cached for ``ttl`` seconds per process.

    A revoked key is refused by every worker at most ``ttl`` seconds after
    :meth:`memberlab.store.Store.revoke_api_key` commits (``Settings.key_cache_ttl``).
    """

    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._cache: dict[str, tuple[str | None, float]] = {}

    def scope_of(self, key: str) -> str | None:
        """The scope of an active key, ``None`` for an unknown or revoked one."""
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[1] < self.ttl:
            return hit[0]
        scope = self.store.api_key_scope(key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (scope, now)
        return scope

    def forget(self) -> None:
        """Drop every cached scope (after a revocation through this process)."""
        self._cache.clear()

    def check(self, key: str | None, needed: str) -> str:
        """The key's scope if it allows ``needed``; raises :class:`AuthError` otherwise."""
        if not key:
            raise AuthError("missing 'Authorization: Bearer <key>'.")
        scope = self.scope_of(key)
        if scope is None:
            raise AuthError("unknown or revoked API key.")
        if needed == "admin" and scope != "admin":
            raise ForbiddenError(f"this call needs scope 'admin', key has {scope!r}.")
        return scope


@dataclass(frozen=True)
class Services:
    """Everything a route may use; one per app (per worker process)."""

    settings: Settings
    store: Store
    callouts: CalloutsHolder
    layouts: LayoutsHolder
    trainer: Trainer
    keys: KeyCache
    choice: ChoiceHolder | None = None
    experiment: Experiment = field(default_factory=Experiment)
    value: ValueHolder | None = None  # the value objective's policy (objective="value")

    @property
    def served(self) -> PolicyHolder:
        """The holder that serves callout decisions, logs them under its kind
        (:attr:`served_kind`) and learns from their feedback: ``value`` under the value
        objective, else ``callouts``. Every callout route reads this one (its click
        model through :meth:`PolicyHolder.run_clicks`), never ``callouts`` directly."""
        return serving_holder(self.callouts, self.value)

    @property
    def served_kind(self) -> str:
        """The kind callout decisions are logged and trained as (``callouts`` or ``value``)."""
        return self.served.kind.name


def build_services(settings: Settings, store: Store) -> Services:
    """The holders, trainer and key cache of one app over ``store``."""
    callouts = CalloutsHolder(store, settings)
    layouts = LayoutsHolder(store, settings)
    value = ValueHolder(store, settings) if settings.objective == "value" else None
    return Services(
        settings=settings,
        store=store,
        callouts=callouts,
        layouts=layouts,
        trainer=Trainer(store, settings, callouts, layouts, value),
        keys=KeyCache(store, settings.key_cache_ttl),
        choice=ChoiceHolder(settings.choice_model) if settings.choice_model else None,
        experiment=Experiment.from_settings(settings, store),
        value=value,
    )


async def services(request: Request) -> Services:  # async: no thread hop
    """The app's :class:`Services` (FastAPI dependency)."""
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]

_bearer = HTTPBearer(auto_error=False, description="An API key from `memberlab keys create`.")
Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def require_decide(svc: Svc, creds: Creds) -> str:  # async: no thread hop
    """A key with scope ``decide`` or ``admin`` (FastAPI dependency)."""
    return svc.keys.check(creds.credentials if creds else None, "decide")


async def require_admin(svc: Svc, creds: Creds) -> str:
    """A key with scope ``admin`` (FastAPI dependency)."""
    return svc.keys.check(creds.credentials if creds else None, "admin")


DecideKey = Annotated[str, Depends(require_decide)]
AdminKey = Annotated[str, Depends(require_admin)]

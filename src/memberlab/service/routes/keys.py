"""API keys: ``/v1/admin/keys`` (admin scope): list, create, revoke."""

from __future__ import annotations

from fastapi import APIRouter

from memberlab._errors import UnknownItemError
from memberlab.service.deps import AdminKey, Svc
from memberlab.service.routes._common import responses
from memberlab.service.schemas import KeyCreatedOut, KeyCreateIn, KeyOut, KeyRevokedOut, KeysOut

router = APIRouter(tags=["admin"])


@router.get("", response_model=KeysOut)
def list_keys(svc: Svc, _: AdminKey) -> KeysOut:
    """Every key by prefix, scope, label, creation time and state (never the key)."""
    return KeysOut(
        keys=[
            KeyOut(
                prefix=k.prefix,
                scope=k.scope,
                label=k.label,
                created_at=k.created_at,
                revoked=k.revoked,
            )
            for k in svc.store.list_api_keys()
        ]
    )


@router.post("", response_model=KeyCreatedOut, status_code=201)
def create_key(body: KeyCreateIn, svc: Svc, _: AdminKey) -> KeyCreatedOut:
    """Create a key; it is in the response once, only its hash is stored."""
    key = svc.store.create_api_key(body.scope, label=body.label)
    return KeyCreatedOut(key=key, prefix=key[:16], scope=body.scope)


@router.delete(
    "/{prefix}", response_model=KeyRevokedOut, responses=responses(_404="No such active key.")
)
def revoke_key(prefix: str, svc: Svc, _: AdminKey) -> KeyRevokedOut:
    """Revoke a key by the prefix ``GET /v1/admin/keys`` shows (or the whole key).

    This worker refuses it at once; every other worker within ``key_cache_ttl`` seconds.
    """
    n = svc.store.revoke_api_key(prefix)
    if n == 0:
        raise UnknownItemError(f"no active key with prefix {prefix!r}.")
    svc.keys.forget()
    return KeyRevokedOut(
        prefix=prefix[:16], revoked=n, takes_effect_within=svc.settings.key_cache_ttl
    )

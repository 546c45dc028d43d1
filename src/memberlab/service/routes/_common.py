"""Path parameters, OpenAPI error responses and the hot routes' request plumbing, shared
by the route modules."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from memberlab.service.deps import Services
from memberlab.service.schemas import NO_NUL, ErrorOut

__all__ = [
    "BODY_MODELS",
    "ItemPath",
    "SpacePath",
    "hot_route",
    "json_response",
    "read_body",
    "responses",
    "services_for",
]

M = TypeVar("M", bound=BaseModel)

ItemPath = Annotated[
    str, Path(min_length=1, max_length=200, pattern=NO_NUL, description="Item id.")
]
SpacePath = Annotated[
    str, Path(min_length=1, max_length=200, pattern=NO_NUL, description="Space name.")
]

#: Request models of the hot routes, which read their own bodies (:func:`read_body`):
#: FastAPI does not see them in a signature, so the app adds their schemas to OpenAPI.
BODY_MODELS: list[type[BaseModel]] = []


def responses(**codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries ``{status: {"model": ErrorOut, "description": ...}}``."""
    return {int(k[1:]): {"model": ErrorOut, "description": v} for k, v in codes.items()}


# The decision routes take the bare Request and do the work of FastAPI's dependency
# solving themselves: resolving the Services, the bearer key and the body model through
# Depends cost about 0.12 ms of a 0.41 ms decision (benchmarks/service_profile.py).
def hot_route(body: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI of a route that reads ``body`` itself and needs a bearer key: the same
    request body and security entries FastAPI writes for a typed parameter."""
    BODY_MODELS.append(body)
    ref = {"$ref": f"#/components/schemas/{body.__name__}"}
    return {
        "requestBody": {"content": {"application/json": {"schema": ref}}, "required": True},
        "security": [{"HTTPBearer": []}],
    }


def services_for(request: Request, scope: str) -> Services:
    """The app's :class:`Services`, once the request's bearer key allows ``scope``
    (:class:`~memberlab.AuthError` / ``ForbiddenError`` otherwise, as ``require_*``)."""
    svc: Services = request.app.state.services
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    svc.keys.check(key.strip() if scheme.lower() == "bearer" else None, scope)
    return svc


async def read_body(request: Request, model: type[M]) -> M:
    """The JSON body validated as ``model``; errors answer 422 exactly as a typed body
    parameter's would (locations under ``body``)."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None


def json_response(out: BaseModel, status_code: int = 200) -> Response:
    """``out`` serialised by pydantic (the route's ``response_model`` documents it)."""
    return Response(out.model_dump_json(), status_code=status_code, media_type="application/json")

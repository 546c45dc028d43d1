"""Path parameters and OpenAPI error responses shared by the route modules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from memberlab.service.schemas import NO_NUL, ErrorOut

ItemPath = Annotated[
    str, Path(min_length=1, max_length=200, pattern=NO_NUL, description="Item id.")
]
SpacePath = Annotated[
    str, Path(min_length=1, max_length=200, pattern=NO_NUL, description="Space name.")
]


def responses(**codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries ``{status: {"model": ErrorOut, "description": ...}}``."""
    return {int(k[1:]): {"model": ErrorOut, "description": v} for k, v in codes.items()}

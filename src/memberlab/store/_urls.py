"""Database URLs: the per-user default, normalisation and display (password masked)."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

__all__ = ["data_dir", "default_database_url", "display_url", "normalize_url"]


def data_dir() -> Path:
    """The per-user data directory of memberlab, the same for every command.

    ``$MEMBERLAB_DATA_DIR`` if set (and not empty); else ``$XDG_DATA_HOME/memberlab``;
    else ``~/.local/share/memberlab``. It never depends on the working directory.
    """
    explicit = os.environ.get("MEMBERLAB_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return (base / "memberlab").resolve()


def default_database_url() -> str:
    """The SQLite file ``memberlab.db`` in :func:`data_dir`."""
    return f"sqlite:///{data_dir() / 'memberlab.db'}"


def display_url(url: str | None) -> str:
    """The database URL as shown to people: the default resolved, the password masked.

    >>> display_url("postgresql://ann:secret@db:5432/prod")
    'postgresql+psycopg://ann:***@db:5432/prod'
    """
    return sa.make_url(normalize_url(url)).render_as_string(hide_password=True)


def normalize_url(url: str | None) -> str:
    """Resolve the default and select the psycopg driver for PostgreSQL URLs.

    >>> normalize_url("postgresql://u@h:5432/db")
    'postgresql+psycopg://u@h:5432/db'
    >>> normalize_url("postgres://u@h/db")
    'postgresql+psycopg://u@h/db'
    """
    if not url:
        return default_database_url()
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if "://" not in url:  # a bare path means a SQLite file
        return f"sqlite:///{Path(url).resolve()}"
    return url

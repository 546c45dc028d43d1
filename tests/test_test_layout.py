"""Test modules outside packages share one namespace under pytest's default import mode."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_module_basenames_are_unique_outside_packages() -> None:
    names = Counter(
        p.name
        for p in TESTS.rglob("*.py")
        if p.name != "conftest.py" and not (p.parent / "__init__.py").exists()
    )
    dupes = sorted(n for n, c in names.items() if c > 1)
    assert not dupes, f"rename these test modules, their basenames clash: {dupes}"

"""Packages whose public names load their module on first use (PEP 562).

``import memberlab.choice`` used to import every estimator, scipy.stats and
scikit-learn (about 1.3 s of CPU); a decision server that only names one constant paid
for all of it in every worker. A lazy package keeps its imports in an ``if TYPE_CHECKING:``
block (what type checkers and IDEs read) and calls :func:`attach`, which reads that block
from the package's own source and resolves a name from its module the first time it is
used, as scientific-python's ``lazy_loader.attach_stub`` does with a ``.pyi`` file.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["attach"]


def _type_checking_imports(source: str) -> dict[str, str]:
    """``{name: module}`` of the ``from module import name`` lines under
    ``if TYPE_CHECKING:`` in ``source``."""
    found: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
                    for alias in stmt.names:
                        found[alias.asname or alias.name] = stmt.module
    return found


def attach(package: str, init_file: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package ``package`` whose ``__init__.py`` is
    ``init_file``."""
    where = _type_checking_imports(Path(init_file).read_text(encoding="utf-8"))
    if not where:
        raise ImportError(f"{package}: no 'from ... import ...' under 'if TYPE_CHECKING:'.")
    pkg = importlib.import_module(package)
    folder = Path(init_file).parent

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            if (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file():
                return importlib.import_module(f"{package}.{name}")  # a public submodule
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(pkg, name, value)  # later lookups do not come here again
        return value

    # A name that is also a submodule's (``evaluation.evaluate``, the function and its
    # module) is resolved now: importing the submodule later would set the package's
    # attribute to the module, and __getattr__ would never be asked again.
    for name in where:
        if (folder / f"{name}.py").is_file():
            setattr(pkg, name, __getattr__(name))

    def __dir__() -> list[str]:
        return sorted({*vars(pkg), *where})

    return __getattr__, __dir__

"""The choice package's import structure (issue 8: ``_env`` and ``_counterfactual``
imported each other, one of them from inside a function to dodge the cycle).

Module-level imports form no cycle. Counting deferred (in-function) imports too, neither
``_env`` nor the shared ``_dynamics`` reaches ``_counterfactual`` (``_bootstrap`` no
longer imports it either). Deferred imports that
remain are facades: ``ChoiceResults.price_elasticities`` calls the counterfactual module,
and ``_pqr``/``_parametric`` share helpers in both directions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import memberlab.choice

PKG = Path(memberlab.choice.__file__).parent


def _graph(*, deferred: bool) -> dict[str, set[str]]:
    mods = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for m in mods:
        deps: set[str] = set()
        tree = ast.parse((PKG / f"{m}.py").read_text())
        for node in ast.walk(tree) if deferred else tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] == ["memberlab", "choice"] and len(parts) > 2:
                    deps.add(parts[2])
        graph[m] = deps & mods
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return [*stack[stack.index(d) :], d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def _reaches(graph: dict[str, set[str]], a: str, b: str) -> bool:
    seen, todo = set(), [a]
    while todo:
        m = todo.pop()
        if m == b:
            return True
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return False


def test_no_module_level_import_cycles_in_choice() -> None:
    graph = _graph(deferred=False)
    assert "_counterfactual" in graph and "_env" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_env_does_not_import_counterfactual_even_deferred() -> None:
    graph = _graph(deferred=True)
    assert _reaches(graph, "_counterfactual", "_dynamics")
    for m in ("_env", "_dynamics"):
        assert not _reaches(graph, m, "_counterfactual"), m


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None

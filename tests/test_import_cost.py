"""A decision server does not load what it does not use: importing the service app (each
worker does) must not import the choice estimators, scipy.stats, scikit-learn or
matplotlib, and every public name of a lazy package still resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after(code: str, modules: list[str]) -> dict[str, bool]:
    probe = f"{code}\nimport sys\nprint(' '.join(str(m in sys.modules) for m in {modules!r}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return dict(zip(modules, (w == "True" for w in out.stdout.split()), strict=True))


def test_the_service_app_does_not_load_the_choice_estimators() -> None:
    heavy = ["memberlab.choice._pqr", "scipy.stats", "sklearn", "matplotlib"]
    loaded = _loaded_after("import memberlab.service.app", heavy)
    assert not any(loaded.values()), loaded


@pytest.mark.parametrize("package", ["memberlab.choice", "memberlab.evaluation", "memberlab.value"])
def test_every_public_name_of_a_lazy_package_resolves(package: str) -> None:
    import importlib

    mod = importlib.import_module(package)
    assert set(mod.__all__) <= set(dir(mod))
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute"):
        _ = mod.no_such_name


def test_a_name_shared_with_its_submodule_is_the_function() -> None:
    # ``memberlab.evaluation.evaluate`` is a module and a function of the package
    code = (
        "import memberlab.evaluation.evaluate\n"
        "from memberlab.evaluation import evaluate, ope\n"
        "assert callable(evaluate) and hasattr(ope, 'ips'), (evaluate, ope)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

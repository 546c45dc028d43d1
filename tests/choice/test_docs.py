"""The Python blocks of docs/choice.md run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "choice.md"


@pytest.mark.skipif(not DOC.is_file(), reason="docs/choice.md not found")
def test_doc_examples_run(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 2
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {"__name__": "doc"})
    assert (tmp_path / "choice_counterfactual.png").is_file()
    assert (tmp_path / "choice_model" / "results.json").is_file()

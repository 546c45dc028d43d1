"""The Python blocks of docs/value.md run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "value.md"


@pytest.mark.skipif(not DOC.is_file(), reason="docs/value.md not found")
def test_doc_examples_run(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 2
    ns: dict[str, object] = {"__name__": "doc"}
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), ns)
    assert (tmp_path / "value_compare.png").is_file()

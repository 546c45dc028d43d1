"""The Python blocks of docs/choice_rust.md run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "choice_rust.md"


@pytest.mark.skipif(not DOC.is_file(), reason="docs/choice_rust.md not found")
def test_rust_doc_examples_run(capsys) -> None:  # type: ignore[no-untyped-def]
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {"__name__": "doc"})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "-6055.25 9.7558 2.6275"
    assert out[1].startswith("True ")

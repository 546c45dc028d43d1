"""The Python examples of docs/layouts.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "layouts.md"


def test_layouts_doc_python_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/layouts.md has no python example"
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {})

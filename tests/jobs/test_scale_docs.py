"""The Python blocks of docs/scale.md run, and it carries no unfilled placeholders."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "scale.md"


def test_doc_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = DOC.read_text()
    assert "BENCHMARK_RESULTS" not in text and "CAPACITY_ESTIMATE" not in text
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 5
    ns: dict[str, object] = {"__name__": "doc"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for code in blocks:
            exec(compile(code, str(DOC), "exec"), ns)
    assert (tmp_path / "model" / "bootstrap" / "bootstrap.json").is_file()
    assert (tmp_path / "model" / "coef_intervals.csv").is_file()
    assert any((tmp_path / "scores").glob("part-*.parquet"))

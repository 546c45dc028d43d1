"""The Python examples in docs/evaluation.md run as written."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from memberlab.evaluation import UntrustworthyEstimateWarning

DOC = Path(__file__).resolve().parents[2] / "docs" / "evaluation.md"


def test_docs_python_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrustworthyEstimateWarning)
        for code in blocks:
            exec(compile(code, str(DOC), "exec"), {})

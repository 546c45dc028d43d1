"""``memberlab serve`` refuses a bad holdout configuration in one line (exit 2), before
any process starts; ``experiment readout`` says when there is not enough data yet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memberlab.cli.main", *args],
        capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--holdout-fraction", "1"), "--holdout-fraction (MEMBERLAB_HOLDOUT_FRACTION) == 1.0"),
        (("--holdout-fraction", "-0.1"), "greater than or equal to 0"),
        (("--holdout-policy", "best"), "--holdout-policy (MEMBERLAB_HOLDOUT_POLICY) == 'best'"),
        (("--experiment-salt", ""), "--experiment-salt"),
    ],
)
def test_serve_refuses_a_bad_holdout(args: tuple[str, ...], says: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    proc = _cli("serve", "--database-url", url, "--port", "1", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr


def test_readout_before_any_experiment(tmp_path: Path) -> None:
    from memberlab.store import Store

    url = f"sqlite:///{tmp_path}/m.db"
    Store(url).close()
    proc = _cli("experiment", "readout", "--database-url", url, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("not ready: arm 'holdout' has 0 unit(s)")
    proc = _cli("experiment", "readout", "--database-url", url, "--since", "x", cwd=tmp_path)
    assert proc.returncode == 2 and "--since == 'x'" in proc.stderr

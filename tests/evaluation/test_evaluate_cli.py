"""``memberlab evaluate obd`` on the OBD sample in the obp wheel: the JSON shape of the
issue, obp's names accepted as written, and the same numbers as the library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memberlab.evaluation import LoggedPolicy, UniformPolicy, evaluate, load_obd


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memberlab.cli.main", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_evaluate_obd_json(obd_wheel: Path) -> None:
    proc = _cli("evaluate", "obd", str(obd_wheel), "--behavior", "bts", "--campaign", "men",
                "--policy", "uniform", "--estimators", "ipw,snipw,dm,dr,sndr,switch-dr,dr-os",
                "--bootstrap", "50", "--seed", "3", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n"] == 10_000
    names = [e["estimator"] for e in out["estimates"]]
    assert names == ["IPS", "SNIPS", "DM", "DR", "SNDR", "Switch-DR", "DR-OS"]
    for e in out["estimates"]:
        assert {"estimator", "value", "se", "lower", "upper", "ess", "max_weight"} <= set(e)
        assert e["lower"] <= e["upper"]
    data = load_obd(obd_wheel, behavior="bts", campaign="men")
    lib = evaluate(
        data,
        UniformPolicy(),
        estimators=["ipw", "snipw", "dm", "dr", "sndr", "switch-dr", "dr-os"],
        interval="bootstrap",
        n_bootstrap=50,
        rng=3,
        warn=False,
    )
    for e, d in zip(out["estimates"], lib.to_dict()["estimates"], strict=True):
        assert e["value"] == pytest.approx(d["value"], rel=1e-12)
        assert (e["lower"], e["upper"]) == pytest.approx((d["lower"], d["upper"]), rel=1e-12)


def test_logged_policy_on_obd_equals_on_policy(obd_wheel: Path) -> None:
    proc = _cli("evaluate", "obd", str(obd_wheel), "--behavior", "bts", "--campaign", "women",
                "--policy", "logged", "--estimators", "ipw,snipw", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for e in out["estimates"]:  # every weight is 1
        assert e["value"] == pytest.approx(out["on_policy"], rel=1e-12)
        assert e["max_weight"] == pytest.approx(1.0)
    data = load_obd(obd_wheel, behavior="bts", campaign="women")
    assert evaluate(data, LoggedPolicy(), estimators=["ipw"]).estimates[0].value == pytest.approx(
        out["on_policy"]
    )


def test_bad_arguments_fail_cleanly(obd_wheel: Path) -> None:
    proc = _cli("evaluate", "obd", str(obd_wheel), "--estimators", "ipw,magic")
    assert proc.returncode == 2 and "estimator == 'magic'" in proc.stderr
    proc = _cli("evaluate", "obd", str(obd_wheel), "--behavior", "greedy")
    assert proc.returncode == 2 and "behavior == 'greedy'" in proc.stderr
    proc = _cli("evaluate", "obd", str(obd_wheel), "--interval", "studentized")
    assert proc.returncode == 2 and "needs --bootstrap" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

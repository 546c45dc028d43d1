"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium against a
real ``memberlab serve`` (SQLite) that has items, decisions, events, a trainer step, a
layout space, a choice model fitted on a simulated membership panel, a holdout (30%,
fixed salt) whose units are picked so the split is broken (2 of 42 units held out: the
SRM warning must show) and an offline evaluation recorded by ``memberlab evaluate logs
--record``.

Skips when Chromium, chromedriver or Selenium is missing, unless
``MEMBERLAB_REQUIRE_BROWSER=1`` (CI), when it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _choice_model import fit_choice_model
from _service_server import Server, start_server

from memberlab.service._experiment import unit_draw
from memberlab.store import Store

CHROMIUM = os.environ.get("MEMBERLAB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MEMBERLAB_CHROMEDRIVER", "/usr/bin/chromedriver")
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
ITEMS = {
    "free-delivery": {"benefit": "delivery", "colour": "blue"},
    "video": {"benefit": "video", "colour": "red"},
    "music": {"benefit": "music", "colour": "grey"},
}
CLICKY = {"free-delivery": 3, "video": 5, "music": 11}  # every n-th impression is clicked
SPACE = {"slots": {"headline": ["h1", "h2"], "image": ["i1", "i2", "i3"]}}
SALT = "dashboard"


def _skewed_units() -> list[str]:
    """2 units the salt holds out and 40 it does not: 5% against 30%, SRM p < 0.001."""
    ids = [f"shopper-{j}" for j in range(400)]
    held = [u for u in ids if unit_draw(SALT, u) < 0.3][:2]
    rest = [u for u in ids if unit_draw(SALT, u) >= 0.3][:40]
    return held + rest


def _browser_missing(reason: str) -> None:
    if os.environ.get("MEMBERLAB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"a browser is required (MEMBERLAB_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(f"browser test skipped: {reason}")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.status_code}: {r.text}"
    return r.json()


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium with a fresh profile (checked before any other set-up)."""
    for name, path in (("Chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            found = shutil.which(Path(path).name)
            _browser_missing(
                f"{name} is not at {path}"
                + (f" (one is at {found}; set MEMBERLAB_{name.upper()})" if found else "")
                + "; apt-get install chromium chromium-driver."
            )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _browser_missing("selenium is not installed (pip install -e '.[dev]').")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,1000",
    ):
        opts.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    drv = webdriver.Chrome(service=service, options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def _server_with_model(tmp_path: Path, name: str, *args: str) -> tuple[Server, str]:
    """A server on a fresh SQLite database with a small fitted choice model (windows of
    60 s, trainer on request, 15 closed impressions before an estimate is shown), and
    an admin key."""
    model = fit_choice_model(tmp_path / f"choice-{name}", members=300, months=10)
    url = f"sqlite:///{tmp_path}/{name}.db"
    store = Store(url)
    try:
        admin = store.create_api_key("admin")
    finally:
        store.close()
    server = start_server(
        url,
        str(tmp_path / f"serve-{name}.log"),
        *("--train-interval", "0", "--attribution-window", "60"),
        *("--choice-model", str(model), *args),
        env={"MEMBERLAB_MIN_OBSERVATIONS": "15"},
    )
    return server, admin


@pytest.fixture
def populated(tmp_path: Path) -> Iterator[tuple[Server, str, dict[str, Any]]]:
    """A server with a choice model, a holdout (split skewed on purpose), items, traffic,
    feedback, a trainer step, a layout space and a recorded offline evaluation; returns
    it, an admin key and the API's own view of what the page should show."""
    holdout = ("--holdout-fraction", "0.3", "--experiment-salt", SALT)
    server, admin = _server_with_model(tmp_path, "memberlab", *holdout)
    url = f"sqlite:///{tmp_path}/memberlab.db"  # the database _server_with_model made
    units = _skewed_units()
    try:
        with server.client(admin) as c:
            for item_id, attrs in ITEMS.items():
                _ok(c.put(f"/v1/callouts/items/{item_id}", json={"attributes": attrs}))
            served: dict[str, int] = dict.fromkeys(ITEMS, 0)
            events = []
            for n in range(60):  # an hour-spanning minute grid: several traffic buckets
                t = T0 + 2.5 * n
                body = {"timestamp": _iso(t), "unit_id": units[n % len(units)]}
                d = _ok(c.post("/v1/callouts/decisions", json=body))
                item = d["items"][0]["item_id"]
                served[item] += 1
                if served[item] % CLICKY[item] == 0:
                    events.append(
                        {
                            "event_id": f"e{n}",
                            "decision_id": d["decision_id"],
                            "item_id": item,
                            "type": "click",
                            "timestamp": _iso(t + 5),
                        }
                    )
            _ok(c.put("/v1/layouts/home", json=SPACE))
            for n in range(12):
                t = T0 + 10 * n
                d = _ok(c.post("/v1/layouts/home/decisions", json={"timestamp": _iso(t)}))
                if n % 3 == 0:
                    ev = {"event_id": f"l{n}", "decision_id": d["decision_id"], "type": "click"}
                    events.append({**ev, "timestamp": _iso(t + 2)})
            _ok(c.post("/v1/events", json={"events": events}), 202)
            # later shoppers whose windows are still open when the trainer runs
            for n in range(4):
                _ok(c.post("/v1/callouts/decisions", json={"timestamp": _iso(T0 + 600 + n)}))
            step = _ok(c.post("/v1/admin/train"))
            assert step["closed"] > 0, step
            proc = subprocess.run(
                [sys.executable, "-m", "memberlab.cli.main", "evaluate", "logs", "--database-url",
                 url, "--policy", "uniform", "--estimators", "ipw,snipw", "--record", "--json"],
                capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            expect = {
                "stats": _ok(c.get("/v1/admin/stats")),
                "items": _ok(c.get("/v1/callouts/items"))["items"],
                "leaderboard": _ok(c.get("/v1/layouts/home"))["leaderboard"],
                "experiment": _ok(c.get("/v1/admin/experiment")),
                "evaluation": json.loads(proc.stdout),
            }
        assert expect["stats"]["pending"] >= 4
        yield server, admin, expect
    finally:
        server.stop()


def test_dashboard_renders_in_chromium(
    driver: Any, populated: tuple[Server, str, dict[str, Any]], tmp_path: Path
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, admin, expect = populated
    wait = WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException,))

    def css(sel: str) -> list[Any]:
        return list(driver.find_elements(By.CSS_SELECTOR, sel))

    driver.get(server.base_url + "/dashboard")
    assert driver.title == "memberlab dashboard"
    driver.find_element(By.ID, "key").send_keys(admin)
    driver.find_element(By.ID, "save").click()

    # callouts: a rate bar (with its interval) per item with enough observations; the
    # others say "too few observations" instead of an interval from a few clicks
    enough = {i["item_id"] for i in expect["items"] if i["enough_data"]}
    few = set(ITEMS) - enough
    assert enough and all(i["observations"] >= 15 for i in expect["items"] if i["enough_data"])
    wait.until(lambda _: len(css("#rates rect.bar")) == len(enough))
    bars = {
        b.get_attribute("data-item"): float(b.get_attribute("width"))
        for b in css("#rates rect.bar")
    }
    assert set(bars) == enough
    assert all(w > 0 for w in bars.values())
    assert len(css("#rates line.ci")) == len(enough)
    best = max((i for i in expect["items"] if i["enough_data"]), key=lambda i: i["mean"])
    assert max(bars, key=lambda k: bars[k]) == best["item_id"]  # widths follow the means
    shown_few = {r.get_attribute("data-item"): r.text for r in css("#few-items tr")}
    assert set(shown_few) == few
    assert all("too few observations" in t for t in shown_few.values())

    # when the trainer will next have something to do
    nxt = driver.find_element(By.ID, "next-window").text
    assert "next attribution window closes at" in nxt and "data clock" in nxt, nxt

    # traffic share over time: a row per item, a column per minute bucket
    wait.until(lambda _: css("#traffic-table"))
    rows = css("#traffic-table tr")
    assert len(rows) == 1 + len(ITEMS)
    assert {r.find_elements(By.TAG_NAME, "td")[0].text for r in rows[1:]} == set(ITEMS)
    assert len(rows[0].find_elements(By.TAG_NAME, "th")) >= 3

    # pending feedback: its own labelled element with the database's count
    pending = driver.find_element(By.ID, "pending")
    wait.until(lambda _: driver.find_element(By.ID, "pending-count").text != "-")
    assert driver.find_element(By.ID, "pending-count").text == str(expect["stats"]["pending"])
    assert "waiting for feedback" in pending.text
    assert "Pending feedback" in driver.find_element(By.TAG_NAME, "body").text

    # layout leaderboard: the space and its top layouts
    wait.until(lambda _: css("table.leaderboard[data-space='home'] tr"))
    board = css("table.leaderboard[data-space='home'] tr")
    assert len(board) == 1 + len(expect["leaderboard"]) and len(board) > 1
    assert "headline=" in board[1].text and "image=" in board[1].text
    # 12 layout decisions over 4 layouts: no P(click) of 64-68% from one click
    assert all(not e["enough_data"] for e in expect["leaderboard"])
    assert all("too few observations" in r.text and "%" not in r.text for r in board[1:])

    # membership counterfactuals: the model line, a refused query, then the chart
    wait.until(lambda _: "anchor none" in driver.find_element(By.ID, "cf-model").text)
    shift = driver.find_element(By.ID, "cf-shift")
    months = driver.find_element(By.ID, "cf-months")
    shift.clear()
    shift.send_keys("gold=1")
    driver.find_element(By.ID, "cf-run").click()
    wait.until(lambda _: "not among" in driver.find_element(By.ID, "cf-err").text)
    assert not css("#cf-chart")
    shift.clear()
    shift.send_keys("monthly=-0.5, annual=0.3")
    months.clear()
    months.send_keys("18")
    driver.find_element(By.ID, "cf-run").click()
    wait.until(lambda _: len(css("#cf-chart path.cf-line")) == 6)
    assert driver.find_element(By.ID, "cf-err").text == ""
    lines = {
        (p.get_attribute("data-action"), p.get_attribute("data-scenario"))
        for p in css("#cf-chart path.cf-line")
    }
    assert lines == {
        (a, s) for a in ("annual", "monthly", "none") for s in ("baseline", "counterfactual")
    }
    for p in css("#cf-chart path.cf-line"):
        assert p.get_attribute("d").count("L") == 18 - 1  # one point per month
    assert len(css("#cf-chart polygon.cf-band")) == 3
    legend = driver.find_element(By.ID, "cf-legend").text
    for word in ("annual", "monthly", "none", "baseline", "counterfactual"):
        assert word in legend
    assert "month 17" in driver.find_element(By.ID, "cf-table").text
    assert driver.find_element(By.ID, "err").text == ""
    # a click-objective service says how to get the member-value panel
    assert "--objective value" in driver.find_element(By.ID, "value-note").text

    # the holdout readout: arms, lift, the SRM warning (the split is broken on purpose),
    # the lift over time with its bands
    exp = expect["experiment"]
    assert exp["ready"] and exp["srm"]["mismatch"] and exp["srm"]["p_value"] < 1e-3, exp["srm"]
    wait.until(lambda _: css("#exp-arms tr[data-arm]"))
    arms = {r.get_attribute("data-arm"): r.text for r in css("#exp-arms tr[data-arm]")}
    assert set(arms) == {"holdout", "policy"}
    assert arms["holdout"].split()[1] == str(exp["arms"]["holdout"]["units"]) == "2"
    assert arms["policy"].split()[1] == str(exp["arms"]["policy"]["units"]) == "40"
    srm = driver.find_element(By.ID, "srm")
    assert "warn" in srm.get_attribute("class") and "sample-ratio mismatch" in srm.text
    assert "30% expected" in srm.text and "do not trust" in srm.text
    assert f"{exp['lift']['absolute']:+.4f}" in driver.find_element(By.ID, "exp-lift").text
    assert "holdout 30% of units, served uniform" in driver.find_element(By.ID, "exp-config").text
    points = css("#lift-chart circle.lift-point")
    assert len(points) == len(exp["series"]) >= 2
    assert len(css("#lift-chart polygon.lift-band")) == 1  # the confidence sequence
    assert len(css("#lift-chart polygon.lift-ci")) == 1
    assert css("#lift-chart path.lift-line")[0].get_attribute("d").count("L") == len(points) - 1

    # the latest offline evaluation, recorded by the CLI
    wait.until(lambda _: css("#evaluations-table tr[data-seq]"))
    (row,) = css("#evaluations-table tr[data-seq]")
    ips = expect["evaluation"]["estimates"][0]
    assert "ope" in row.text and "uniform" in row.text
    assert f"IPS {ips['value']:.4f} [{ips['lower']:.4f}, {ips['upper']:.4f}]" in row.text
    assert f"ESS {int(ips['ess'] + 0.5)}, max w" in row.text
    marks = row.find_elements(By.CSS_SELECTOR, ".ope-warn")  # the weight warning, if any
    assert len(marks) == sum(bool(e["warning"]) for e in expect["evaluation"]["estimates"])
    if ips["warning"]:
        assert f"! untrustworthy: {ips['warning']}" in row.text

    # a full-page screenshot for people to look at
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1200, int(height) + 140)
    driver.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "dashboard.png"
    assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("MEMBERLAB_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "dashboard.png")


VALUE_STATE = {"status": "none", "months_left": 0, "delivery": 2, "video": 0, "tier": 1}
#: decisions per item, each restricted to that item; music stays under min_observations
VALUE_SERVED = {"deal": 20, "annual": 18, "music": 4}


@pytest.fixture
def value_server(tmp_path: Path) -> Iterator[tuple[Server, str, dict[str, Any]]]:
    """A ``--objective value`` server with three callouts, conversions to both plans and
    a trainer step; returns it, an admin key and ``GET /v1/admin/value`` for two states."""
    server, admin = _server_with_model(
        tmp_path, "value", "--objective", "value", "--price", "monthly=1.5", "--price", "annual=14"
    )
    try:
        with server.client(admin) as c:
            for item_id, attrs in {
                "deal": {"pitch": "deal"},
                "annual": {"pitch": "annual"},
                "music": {"pitch": "music"},
            }.items():
                _ok(c.put(f"/v1/callouts/items/{item_id}", json={"attributes": attrs}))
            events, n = [], 0
            for item, count in VALUE_SERVED.items():
                for k in range(count):
                    t = T0 + n
                    n += 1
                    body = {"context": VALUE_STATE, "candidates": [item], "timestamp": _iso(t)}
                    did = _ok(c.post("/v1/callouts/decisions", json=body))["decision_id"]
                    ev = {"decision_id": did, "item_id": item, "timestamp": _iso(t + 1)}
                    if k % 2 == 0:
                        events.append({**ev, "event_id": f"c{n}", "type": "click"})
                    if k % 4 == 0:
                        plan = "annual" if item == "annual" else "monthly"
                        events.append(
                            {**ev, "event_id": f"v{n}", "type": "conversion", "plan": plan}
                        )
            _ok(c.post("/v1/events", json={"events": events}), 202)
            later = {"context": VALUE_STATE, "timestamp": _iso(T0 + 600)}
            _ok(c.post("/v1/callouts/decisions", json=later))
            assert _ok(c.post("/v1/admin/train"))["closed"] == sum(VALUE_SERVED.values())
            first = _ok(c.get("/v1/admin/value"))
            other = first["states"][-1]
            expect = {
                "first": first,
                "chosen": _ok(c.get("/v1/admin/value", params={"state": json.dumps(other)})),
            }
        yield server, admin, expect
    finally:
        server.stop()


def test_dashboard_value_panel_in_chromium(
    driver: Any, value_server: tuple[Server, str, dict[str, Any]]
) -> None:
    """The member-value panel: per callout the expected value and the click rate side by
    side with intervals (or "too few observations"), for the state chosen in the page."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    server, admin, expect = value_server
    wait = WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException,))

    def css(sel: str) -> list[Any]:
        return list(driver.find_elements(By.CSS_SELECTOR, sel))

    driver.get(server.base_url + "/dashboard")
    driver.find_element(By.ID, "key").send_keys(admin)
    driver.find_element(By.ID, "save").click()
    wait.until(lambda _: len(css("#value-table tr")) == 1 + len(VALUE_SERVED))
    first = expect["first"]
    rows = {r.get_attribute("data-item"): r.text for r in css("#value-table tr[data-item]")}
    assert list(rows) == [i["item_id"] for i in first["items"]]  # ranked by expected value
    for item in first["items"]:
        text = rows[item["item_id"]]
        if item["enough_data"]:
            assert f"{item['expected_value']:.4f} [{item['expected_value_lower']:.4f}," in text
            assert f"{100 * item['click_rate']:.1f}%" in text
        else:
            assert "too few observations" in text and "[" not in text
    assert {i["item_id"] for i in first["items"] if not i["enough_data"]} == {"music"}
    plans = driver.find_element(By.ID, "value-plans").text
    assert f"annual {first['plans'][0]['value']:.2f}" in plans
    # choose another state: the table and the plans' values follow it
    sel = Select(driver.find_element(By.ID, "value-state"))
    assert len(sel.options) == len(first["states"])
    sel.select_by_index(len(first["states"]) - 1)
    chosen = expect["chosen"]
    want = f"annual {chosen['plans'][0]['value']:.2f}"
    wait.until(lambda _: want in driver.find_element(By.ID, "value-plans").text)
    item = next(i for i in chosen["items"] if i["enough_data"])
    row = driver.find_element(By.CSS_SELECTOR, f"#value-table tr[data-item='{item['item_id']}']")
    assert f"{item['expected_value']:.4f}" in row.text
    assert driver.find_element(By.ID, "err").text == ""

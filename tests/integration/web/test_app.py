"""The web view in a real headless Chromium: what a release manager sees and clicks through.

A running controller (real git remote and store, fake deployer and quantum backends) is
driven into a scene with a failed rollout, an approvals hold, a suspended app and a
degraded target (tests/helpers/web.py); Chromium loads the pages over HTTP. Each test
takes a screenshot and checks the rendered DOM.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qrelease.config import WebConfig
from qrelease.daemon import Controller
from tests.helpers.browser import screenshot
from tests.helpers.daemon import Api, Rig, synced, wait_for
from tests.helpers.web import GATE_MESSAGE, stage_scene

TOKEN = "browser-token-7Hq2"


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def scene(rig: Rig, api_for: Callable[[Controller], Api]) -> str:
    controller = rig.start()
    stage_scene(rig, api_for(controller))
    return f"http://{controller.http.address}"


def cell(page: Any, env: str, app: str) -> Any:
    return page.locator(f'#matrix td[data-env="{env}"][data-app="{app}"]')


def test_the_matrix_shows_every_state_in_words(page: Any, scene: str, tmp_path: Path) -> None:
    response = page.goto(scene + "/")
    assert response.status == 200
    shot = screenshot(page, tmp_path / "web-matrix.png")
    assert shot.stat().st_size > 10_000
    heads = page.locator("#matrix thead th.env")
    assert [heads.nth(i).get_attribute("data-env") for i in range(heads.count())] == [
        "dev",
        "staging",
        "prod",
    ]
    assert "2 of 3 approvals" in heads.nth(1).inner_text()
    failed = cell(page, "dev", "bell-service")
    assert failed.locator(".versions").inner_text() == "1.2.0 → 1.1.0"
    assert "Failed (gates)" in failed.locator(".badge").all_inner_texts()
    assert GATE_MESSAGE in failed.locator(".note").inner_text()
    held = cell(page, "staging", "bell-service").locator(".badge").all_inner_texts()
    assert {"Held (approvals)", "approvals: 0 of 2"} <= set(held)
    assert "Suspended" in cell(page, "staging", "qrng").locator(".badge").all_inner_texts()
    degraded = cell(page, "prod", "bell-service").locator(".badge").all_inner_texts()
    assert degraded == ["Synced", "Healthy", "target Degraded"]
    assert cell(page, "prod", "qrng").locator(".badge").all_inner_texts() == ["Synced", "Healthy"]
    edge = failed.evaluate("cell => getComputedStyle(cell).borderLeftColor")
    assert edge == "rgb(163, 35, 27)"  # the stylesheet loaded under the page's CSP: red edge


def test_an_app_page_shows_each_environment_with_gates_and_events(
    page: Any, scene: str, tmp_path: Path
) -> None:
    page.goto(scene + "/")
    page.click("#matrix a[href='/apps/bell-service']")
    page.wait_for_url("**/apps/bell-service")
    screenshot(page, tmp_path / "web-app.png")
    dev = page.locator("#env-dev")
    assert dev.locator(".desired").inner_text() == "1.1.0"
    assert dev.locator(".deployed").inner_text() == "1.2.0"
    assert dev.locator(".rollout").inner_text() == "Failed at gates"
    gate = dev.locator("table.gates tr[data-gate='profile']")
    assert gate.locator("td").all_inner_texts()[:2] == ["profile", "Failed"]
    staging = page.locator("#env-staging")
    assert staging.locator(".rollout").inner_text() == "Held at approvals"
    assert "approvals: 0 of 2" in staging.locator(".reason").inner_text()
    prod = page.locator("#env-prod")
    assert prod.locator(".target").inner_text() == "ionq.simulator (Degraded)"
    assert prod.locator("table.events tbody tr").count() >= 6


def test_history_filters_narrow_the_timeline(page: Any, scene: str, tmp_path: Path) -> None:
    page.goto(scene + "/history")
    page.fill("input[name=env]", "dev")
    page.select_option("select[name=action]", "gate")
    page.select_option("select[name=outcome]", "Failed")
    page.click("button[type=submit]")
    page.wait_for_url("**/history?*")
    screenshot(page, tmp_path / "web-history.png")
    assert "env=dev" in page.url and "action=gate" in page.url
    rows = page.locator("#history tbody tr")
    cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]
    assert cells and all(row[2] == "dev" and row[4] == "gate" for row in cells)
    assert all(row[7] == "Failed" for row in cells)
    assert page.locator("#history-count").inner_text().startswith(f"{len(cells)} entries")
    export = page.locator("a", has_text="JSON").get_attribute("href")
    assert export is not None and "outcome=Failed" in export


def test_the_audit_page_verifies_and_offers_the_export(
    page: Any, scene: str, tmp_path: Path
) -> None:
    page.goto(scene + "/audit")
    screenshot(page, tmp_path / "web-audit.png")
    assert page.locator("#audit-verdict").inner_text().startswith("Verified: the chain of")
    with page.expect_download() as download:
        page.click("text=Audit chain (JSON Lines)")
    saved = tmp_path / "chain.jsonl"
    download.value.save_as(saved)
    lines = saved.read_text().splitlines()
    assert json.loads(lines[0])["format"] == "qrelease-audit-export"
    assert [json.loads(line)["seq"] for line in lines[1:]] == list(range(1, len(lines)))


def test_with_a_token_the_page_asks_for_it_first(
    page: Any,
    rig: Rig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    api_for: Callable[[Controller], Api],
) -> None:
    monkeypatch.setenv("QRELEASE_TEST_WEB_TOKEN", TOKEN)
    controller = rig.start(rig.config(web=WebConfig(token_env="QRELEASE_TEST_WEB_TOKEN")))
    wait_for("the first pass", lambda: synced(api_for(controller)))
    base = f"http://{controller.http.address}"
    assert page.goto(base + "/apps/qrng").status == 401
    screenshot(page, tmp_path / "web-sign-in.png")
    page.fill("input[name=token]", "not the token")
    page.click("button[type=submit]")
    assert "not the web view" in page.locator("#message").inner_text()
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/apps/qrng")
    assert page.locator("h1").inner_text() == "qrng"
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == ["qrelease_web"] and TOKEN not in cookies[0]["value"]
    assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"

"""The web view's routes over HTTP: pages, filters, exports and who may see them.

A real controller (real git remote and store, fake deployer and quantum backends) serves
the pages; httpx's ASGI transport stands in for clients on other hosts.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from qrelease.config import WebConfig
from qrelease.daemon import Controller
from qrelease.daemon.server import live_of
from qrelease.history import audit_export
from qrelease.source.repo import GitRepo
from qrelease.web import WebSite
from qrelease.web.app import COOKIE
from tests.helpers.daemon import Api, Rig, synced, wait_for

TOKEN = "web-token-Qx81-0aa"


@pytest.fixture
def served(rig: Rig, api_for: Callable[[Controller], Api]) -> Iterator[tuple[Controller, Api]]:
    controller = rig.start()
    api = api_for(controller)
    wait_for("the first pass", lambda: synced(api))
    yield controller, api


def site(rig: Rig, controller: Controller, **web: Any) -> WebSite:
    config = rig.config(web=WebConfig(**web))
    return WebSite(config, lambda: live_of(controller.state.view), rig.clock)


class Client:
    """Requests to a web view from one client address, keeping cookies like a browser."""

    def __init__(self, web: WebSite, host: str = "127.0.0.1") -> None:
        self.app = Starlette(routes=web.routes())
        self.host = host
        self.cookies = httpx.Cookies()

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(self.host, 40000))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://qrelease.test", cookies=self.cookies
            ) as http:
                response = await http.request(method, path, **kwargs)
                self.cookies = http.cookies
                return response

        with ThreadPoolExecutor(1) as thread:  # its own event loop, whoever runs one here
            return thread.submit(asyncio.run, send()).result()


def test_the_pages_render_with_the_controller_s_rows(served: tuple[Controller, Api]) -> None:
    _, api = served
    home = api.get("/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert 'data-env="staging"' in home.text and "bell-service" in home.text
    assert home.headers["content-security-policy"].startswith("default-src 'none'")
    assert home.headers["x-frame-options"] == "DENY"
    page = api.get("/apps/bell-service")
    assert page.status_code == 200
    for env in ("dev", "staging", "prod"):
        assert f'id="env-{env}"' in page.text
    assert api.get("/static/web.css").headers["content-type"].startswith("text/css")
    metric = 'qrelease_web_requests_total{code="200",page="matrix"}'
    assert api.metric(metric.split("{")[0]) >= 1


def test_an_unknown_app_is_404_with_suggestions(served: tuple[Controller, Api]) -> None:
    _, api = served
    missing = api.get("/apps/bel-service")
    assert missing.status_code == 404
    assert "No app named &#39;bel-service&#39;" in missing.text
    assert 'href="/apps/bell-service"' in missing.text


def test_history_filters_and_exports_agree(served: tuple[Controller, Api]) -> None:
    _, api = served
    page = api.client.get("/history", params={"env": "prod", "action": "deploy"})
    assert page.status_code == 200 and "2 entries" in page.text
    rows = api.client.get("/history.json", params={"env": "prod", "action": "deploy"}).json()
    assert {(r["env"], r["app"], r["action"]) for r in rows} == {
        ("prod", "bell-service", "deploy"),
        ("prod", "qrng", "deploy"),
    }
    table = list(
        csv.DictReader(io.StringIO(api.client.get("/history.csv", params={"env": "dev"}).text))
    )
    assert table and {r["env"] for r in table} == {"dev"}
    assert list(table[0]) == ["seq", "time", "env", "app", "action", "from_version",
                              "to_version", "revision", "actor", "reason", "outcome", "hash",
                              "source", "signature"]  # fmt: skip
    bad = api.client.get("/history", params={"since": "last tuesday"})
    assert bad.status_code == 400 and "since: &#39;last tuesday&#39; is neither" in bad.text


def test_the_audit_page_verifies_and_its_export_verifies_elsewhere(
    served: tuple[Controller, Api], rig: Rig, tmp_path: Path
) -> None:
    _, api = served
    audit = api.get("/audit")
    assert audit.status_code == 200 and "Verified: the chain of" in audit.text
    export = api.get("/audit/export.jsonl")
    assert export.status_code == 200
    assert "attachment" in export.headers["content-disposition"]
    lines = export.text.splitlines()
    assert json.loads(lines[0])["format"] == "qrelease-audit-export"
    path = tmp_path / "chain.jsonl"
    path.write_text(export.text)
    with GitRepo(rig.remote) as repo:
        findings = audit_export(path, repo, "refs/heads/main")
    assert findings.ok, findings.problems
    assert findings.events == len(lines) - 1


def test_other_hosts_are_refused_unless_remote_is_on(
    served: tuple[Controller, Api], rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, _ = served
    local_only = site(rig, controller)
    refused = Client(local_only, "192.0.2.7").get("/")
    assert refused.status_code == 403 and "answers this machine only" in refused.text
    assert Client(local_only, "::1").get("/").status_code == 200
    monkeypatch.setenv("QRELEASE_TEST_WEB_TOKEN", TOKEN)
    remote = site(rig, controller, remote=True, token_env="QRELEASE_TEST_WEB_TOKEN")
    outside = Client(remote, "192.0.2.7")
    assert outside.get("/").status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert outside.get("/", headers=headers).status_code == 200
    assert outside.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401
    local_only.close()
    remote.close()


def test_a_token_is_asked_for_and_the_cookie_never_holds_it(
    served: tuple[Controller, Api], rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, _ = served
    web = site(rig, controller, token_env="QRELEASE_TEST_WEB_TOKEN")
    browser = Client(web)
    locked = browser.get("/history")
    assert locked.status_code == 503 and "QRELEASE_TEST_WEB_TOKEN is not set" in locked.text
    monkeypatch.setenv("QRELEASE_TEST_WEB_TOKEN", TOKEN)
    asked = browser.get("/history?env=dev")
    assert asked.status_code == 401 and asked.headers["www-authenticate"].startswith("Bearer")
    assert 'name="next" value="/history?env=dev"' in asked.text
    wrong = browser.post("/login", data={"token": "nope", "next": "/history"})
    assert wrong.status_code == 401
    signed = browser.post(
        "/login", data={"token": TOKEN, "next": "/history"}, follow_redirects=False
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/history"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    assert browser.get("/history").status_code == 200
    away = browser.post("/login", data={"token": TOKEN, "next": "//evil.example/x"},
                        follow_redirects=False)  # fmt: skip
    assert away.headers["location"] == "/"
    browser.post("/logout")
    assert COOKIE not in browser.cookies
    assert browser.get("/history").status_code == 401
    web.close()


def test_the_web_view_can_be_switched_off(rig: Rig) -> None:
    controller = rig.start(rig.config(web=WebConfig(enabled=False)))
    with httpx.Client(base_url=f"http://{controller.http.address}") as http:
        assert http.get("/").status_code == 404
        assert http.get("/healthz").status_code == 200

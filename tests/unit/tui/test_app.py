"""The TUI driven with Pilot over a real bare GitOps remote and a real SQLite store.

The store is filled by the real engine over the in-memory deployer and quantum fakes with
a fixed clock; promotions and rollbacks go through the real Promoter, so every commit the
UI makes lands on the bare remote with its `Qrelease-*` trailers.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from textual import events
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, DataTable, Input, Select
from textual.widgets._select import SelectOverlay

from qrelease.model.observed import ObservedState
from qrelease.model.vocabulary import Availability, Health, Rollout, Sync
from qrelease.store import open_store
from qrelease.tui.board import Board, Stage, cell_text, headline, matching
from qrelease.tui.data import Dashboard, Watcher
from qrelease.tui.screens import main as main_screen
from qrelease.tui.screens.approve import ApproveDialog
from qrelease.tui.screens.diff import DiffScreen
from qrelease.tui.screens.entry import EntryScreen
from qrelease.tui.screens.history import HistoryScreen
from qrelease.tui.screens.main import MainScreen
from qrelease.tui.screens.pin import PinDialog, PromoteDialog, RollbackDialog
from qrelease.tui.widgets.detail import DetailPane
from qrelease.tui.widgets.matrix import Matrix
from tests.helpers.tui import (
    DEPLOYED_AT,
    LATER,
    Remote,
    cells,
    drawn,
    drive,
    settle,
    shown,
    type_text,
    until,
)


def test_matching_ignores_case_and_surrounding_spaces() -> None:
    assert matching(["bell-service", "qrng", "bell-2"], " Bell") == ["bell-service", "bell-2"]


def test_watcher_shows_the_pins_first_then_the_full_board_then_only_changes(
    remote: Remote,
) -> None:
    hand = remote.push_edit("releases/dev.yaml", "qrng: 0.2.0", "qrng: 0.1.0", "by hand")
    dashboard = Dashboard(str(remote.bare), remote.state, remote.quantum_for, lambda: LATER)
    with dashboard.watcher() as watcher:
        first = watcher.poll()  # the store alone: what the controller last recorded
        assert first is not None and not first.complete and not first.snapshot.manifests
        assert first.revision == remote.git("rev-parse", "main~1")  # the last pass's
        assert cell_text(first.row("bell-service", "dev")) == "1.2.0 ✓●"
        assert cell_text(first.row("qrng", "dev")) == "0.2.0 ✓●"  # Git not read yet
        assert first.envs == ("dev", "staging", "prod")  # the conventional order, guessed
        assert "from the store; reading Git…" in headline(first, LATER)
        pins = watcher.poll()  # Git's environment files: the pins, not the manifests
        assert pins is not None and pins.stage == Stage.PINS and not pins.snapshot.manifests
        assert pins.revision == hand and not pins.snapshot.errors
        assert cell_text(pins.row("qrng", "dev")) == "0.2.0 → 0.1.0 ↻●"  # Git's new pin
        assert "reading release manifests…" in headline(pins, LATER)
        full = watcher.poll()
        assert full is not None and full.complete and not full.snapshot.errors
        assert full.row("bell-service", "dev") == first.row("bell-service", "dev")
        assert {key: cell_text(row) for key, row in full.rows.items()} == {
            key: cell_text(row) for key, row in pins.rows.items()
        }  # the manifests add targets and details, not what a cell says
        assert full.envs == ("dev", "staging", "prod")
        assert "reading" not in headline(full, LATER)
        assert watcher.poll() is None  # nothing changed: nothing to post


def test_the_first_frame_keeps_the_environment_order_git_gave_last_time(remote: Remote) -> None:
    dashboard = Dashboard(str(remote.bare), remote.state, remote.quantum_for, lambda: LATER)
    (remote.state / "tui-environments.json").write_text(
        '{"version": 1, "environments": ["prod", "dev"]}'
    )
    with dashboard.watcher() as watcher:
        first = watcher.poll()
        assert first is not None and first.envs == ("prod", "dev", "staging")
        pins = watcher.poll()
        assert pins is not None and pins.envs == ("dev", "staging", "prod")
    with dashboard.watcher() as watcher:  # the next session starts in Git's order
        first = watcher.poll()
        assert first is not None and not first.complete
        assert first.envs == ("dev", "staging", "prod")
    (remote.state / "tui-environments.json").write_text("{not json")
    with dashboard.watcher() as watcher:
        first = watcher.poll()  # a broken hint is only a hint: the order is guessed
        assert first is not None and first.envs == ("dev", "staging", "prod")


# -- the main screen ----------------------------------------------------------------------


def test_matrix_shows_every_cell_with_glyphs_and_the_last_reconcile(remote: Remote) -> None:
    app = remote.app()

    async def scenario(pilot: Pilot[None]) -> None:
        lines = drawn(app)
        assert lines[0].split() == ["app", "dev", "staging", "prod"]
        assert lines[1].split() == [
            "▶",
            "bell-service",
            "▶1.2.0",
            "✓●",
            "1.1.0",
            "✓●",
            "1.0.0",
            "✓●",
        ]
        assert cells(app) == {
            ("bell-service", "dev"): "1.2.0 ✓●",
            ("bell-service", "staging"): "1.1.0 ✓●",
            ("bell-service", "prod"): "1.0.0 ✓●",
            ("qrng", "dev"): "0.2.0 ✓●",
            ("qrng", "staging"): "0.2.0 ✓●",
            ("qrng", "prod"): "0.1.0 ✓●",
        }
        status = shown(app.screen.query_one("#status"))
        assert remote.head[:10] in status
        assert "reconciled 2026-11-02 09:00 UTC, 2h ago (succeeded)" in status

    drive(app, scenario)


def test_the_first_frame_already_shows_the_store_board(remote: Remote) -> None:
    app = remote.app()
    first: list[tuple[str | None, str]] = []
    display = app._display

    def record(screen: object, renderable: object) -> None:
        if not first and isinstance(screen, MainScreen):
            board = screen.board
            first.append((board.stage if board else None, shown(screen.query_one("#status"))))
        display(screen, renderable)  # type: ignore[arg-type]

    app._display = record  # type: ignore[method-assign]
    drive(app, lambda pilot: pilot.pause())
    stage, status = first[0]
    assert stage == Stage.STORE  # no frame ever said "Reading the store…"
    assert "from the store; reading Git…" in status


def test_a_slow_store_shows_that_it_is_read_then_the_board(
    remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = threading.Event()
    poll = Watcher.poll

    def slow_poll(watcher: Watcher, *, reload_git: bool = False) -> Board | None:
        released.wait(30)  # the store answers only once the test saw the waiting screen
        return poll(watcher, reload_git=reload_git)

    monkeypatch.setattr(Watcher, "poll", slow_poll)
    monkeypatch.setattr(main_screen, "FIRST_FRAME_WAIT", 0.05)
    app = remote.app()

    async def run() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, MainScreen) and screen.board is None
            assert shown(screen.query_one("#status")).strip() == "Reading the store…"
            released.set()
            await settle(pilot)
            assert cells(app)[("qrng", "prod")] == "0.1.0 ✓●"

    asyncio.run(run())


def test_a_bug_in_the_poller_ends_the_app_with_its_error(
    remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(watcher: Watcher, *, reload_git: bool = False) -> Board | None:
        raise RuntimeError("poller bug")

    monkeypatch.setattr(Watcher, "poll", broken)
    app = remote.app()

    async def run() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(100):
                await pilot.pause(0.05)

    with pytest.raises(RuntimeError, match="poller bug"):
        asyncio.run(run())


def test_navigate_filter_and_open_details(remote: Remote) -> None:
    app = remote.app()

    async def scenario(pilot: Pilot[None]) -> None:
        matrix = app.screen.query_one(Matrix)
        assert matrix.selected() == ("bell-service", "dev")
        await pilot.press("down", "right")
        assert matrix.selected() == ("qrng", "staging")
        lines = drawn(app)  # the cursor reads without colour: ▶ on its app and its cell
        assert lines[1].startswith("   bell-service ") and "▶" not in lines[1]
        assert lines[2].startswith(" ▶ qrng ") and lines[2].count("▶") == 2
        assert lines[2].index("▶0.2.0") == lines[0].index("staging") - 1
        await pilot.press("slash")
        filter_box = app.screen.query_one("#filter", Input)
        assert filter_box.has_focus
        await type_text(pilot, "bell")
        assert list(cells(app)) == [(("bell-service", env)) for env in ("dev", "staging", "prod")]
        assert matrix.selected() == ("bell-service", "staging")  # same column, app filtered out
        await pilot.press("enter")  # keep the filter, back to the matrix
        assert matrix.has_focus and filter_box.value == "bell" and len(matrix.apps) == 1
        await pilot.press("escape")  # esc clears the filter; the cursor stays on its cell
        assert filter_box.value == "" and matrix.has_focus
        await pilot.pause()
        assert matrix.apps == ["bell-service", "qrng"]
        assert matrix.selected() == ("bell-service", "staging")
        await pilot.press("slash")
        await type_text(pilot, "qr")
        assert matrix.apps == ["qrng"]
        await pilot.press("escape")  # from inside the box, too
        await pilot.pause()
        assert filter_box.value == "" and matrix.has_focus and len(matrix.apps) == 2
        assert matrix.selected() == ("qrng", "staging")
        await pilot.press("up")
        await pilot.press("enter")
        await settle(pilot)
        pane = app.screen.query_one(DetailPane)
        assert pane.display
        text = shown(pane.query_one("#detail-body"))
        status = "bell-service in staging  desired 1.1.0 · deployed 1.1.0  ✓ Synced  ● Healthy"
        assert status in text
        assert "packages  bell-service 1.1.0, qdk" in text
        assert "program   programs/bell.qs  entry Bell.Main()" in text
        assert "target    ionq.qpu.aria-1  profile Base" in text
        for gate in ("estimate", "profile", "smoke"):
            assert f"{gate}" in text and "✓ Passed" in text
        assert "deploy   – → 1.1.0  ✓ Healthy" in text
        await pilot.press("right")  # the pane follows the cursor
        await settle(pilot)
        assert "bell-service in prod" in shown(pane.query_one("#detail-body"))
        await pilot.press("escape")
        assert not pane.display

    drive(app, scenario)


def test_mouse_selects_a_cell_and_opens_its_details(remote: Remote) -> None:
    app = remote.app()

    async def scenario(pilot: Pilot[None]) -> None:
        matrix = app.screen.query_one(Matrix)
        pane = app.screen.query_one(DetailPane)
        await pilot.click(Matrix, offset=(52, 2))  # the prod column of the second row
        assert matrix.selected() == ("qrng", "prod") and not pane.display
        await pilot.click(Matrix, offset=(52, 2))  # a click on the selected cell opens it
        await settle(pilot)
        assert pane.display and pane.details is not None
        assert (pane.details.app, pane.details.env) == ("qrng", "prod")

    drive(app, scenario)


def test_live_updates_patch_cells_in_place_and_keep_the_cursor(remote: Remote) -> None:
    app = remote.app()

    async def scenario(pilot: Pilot[None]) -> None:
        matrix = app.screen.query_one(Matrix)
        await pilot.press("down", "right", "right")
        board = matrix.board
        with open_store(remote.state) as store:
            before = store.get_observed("dev", "bell-service")
            assert before is not None
            store.put_observed(before.model_copy(update={"health": Health.DEGRADED}))
            store.put_observed(
                ObservedState(
                    env="dev",
                    app="qrng",
                    desired="0.2.0",
                    deployed="0.2.0",
                    sync=Sync.SYNCED,
                    health=Health.HEALTHY,
                    availability=Availability.UNAVAILABLE,
                )
            )
        for _ in range(100):
            await pilot.pause(0.05)
            if cells(app)[("bell-service", "dev")] == "1.2.0 ✓✗":
                break
        assert cells(app)[("bell-service", "dev")] == "1.2.0 ✓✗"
        assert cells(app)[("qrng", "dev")] == "0.2.0 ✓●⊘"
        assert matrix.selected() == ("qrng", "prod")
        assert matrix.board is not board  # a new board, swapped in under the cursor
        assert drawn(app)[2].split()[:2] == ["▶", "qrng"] and "▶0.1.0" in drawn(app)[2]

    drive(app, scenario)


def test_a_running_rollout_shows_its_step_in_the_cell(remote: Remote) -> None:
    remote.promote("bell-service", "staging", "try 1.2.0", LATER)
    app = remote.app()

    async def scenario(pilot: Pilot[None]) -> None:
        with open_store(remote.state) as store:
            before = store.get_observed("staging", "bell-service")
            assert before is not None
            running = {"desired": "1.2.0", "sync": Sync.OUT_OF_SYNC, "health": Health.PROGRESSING}
            for step, shown_as in (("install", "install"), ("quantum gates", "gates")):
                update = {**running, "rollout": Rollout.RUNNING, "rollout_step": step}
                store.put_observed(before.model_copy(update=update))
                want = f"1.1.0 → 1.2.0 ↻◐» {shown_as}"
                await until(
                    pilot, lambda want=want: cells(app)[("bell-service", "staging")] == want
                )
                assert f"1.1.0 → 1.2.0 ↻◐» {shown_as}" in drawn(app)[1]
            done = {
                "desired": "1.2.0",
                "deployed": "1.2.0",
                "sync": Sync.SYNCED,
                "health": Health.HEALTHY,
            }
            store.put_observed(before.model_copy(update={**done, "rollout": Rollout.SUCCEEDED}))
        await until(pilot, lambda: cells(app)[("bell-service", "staging")] == "1.2.0 ✓●")

    drive(app, scenario)


# -- promote and roll back ----------------------------------------------------------------


def test_promote_dev_to_staging_commits_with_trailers(remote: Remote) -> None:
    app = remote.app()
    head = remote.head

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("p")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, PromoteDialog)
        assert dialog.query_one("#env", Select).value == "staging"
        assert dialog.query_one("#version", Select).value == "1.2.0"
        checks = shown(dialog.query_one("#checks"))
        assert "✓ soak: Healthy in dev for 2h (soak 10m)" in checks and "✗" not in checks
        plan = shown(dialog.query_one("#plan"))
        assert "apps.bell-service: 1.1.0 -> 1.2.0 in releases/staging.yaml" in plan
        assert not dialog.query_one("#force", Checkbox).display  # every check passed
        confirm = dialog.query_one("#confirm", Button)
        assert confirm.disabled  # no reason yet
        assert dialog.query_one("#reason", Input).has_focus  # typing at once is never lost
        await type_text(pilot, "feed-forward Bell pairs")
        assert not confirm.disabled
        await pilot.press("enter")  # the reason is done: Enter moves to Confirm, no commit
        await settle(pilot)
        assert confirm.has_focus and str(confirm.label) == "Confirm: promote 1.2.0 to staging"
        assert remote.head == head and not shown(dialog.query_one("#outcome")).strip()
        await pilot.press("enter")  # the explicit confirm
        await settle(pilot)
        outcome = shown(dialog.query_one("#outcome"))
        assert f"in staging: {remote.head[:12]} pushed" in outcome
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        for _ in range(100):
            if cells(app)[("bell-service", "staging")] == "1.1.0 → 1.2.0 ↻●":
                break
            await pilot.pause(0.05)
        assert cells(app)[("bell-service", "staging")] == "1.1.0 → 1.2.0 ↻●"

    drive(app, scenario)
    assert remote.head != head
    message = remote.git("log", "-1", "--format=%B", "main")
    assert message.startswith("promote bell-service 1.1.0 -> 1.2.0 in staging")
    for trailer in (
        "Qrelease-Action: promote",
        "Qrelease-App: bell-service",
        "Qrelease-Env: staging",
        "Qrelease-From: 1.1.0",
        "Qrelease-To: 1.2.0",
        "Qrelease-Reason: feed-forward Bell pairs",
    ):
        assert trailer in message
    assert "bell-service: 1.2.0" in remote.git("show", "main:releases/staging.yaml")


def test_refused_promotion_names_each_failed_check_then_force_overrides(remote: Remote) -> None:
    app = remote.app(now=DEPLOYED_AT + timedelta(minutes=1))  # soak 10m not over yet
    head = remote.head

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("p")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, PinDialog)
        assert "✗ soak: Healthy in dev for 1m (soak 10m)" in shown(dialog.query_one("#checks"))
        force = dialog.query_one("#force", Checkbox)
        assert force.display and not force.value
        await type_text(pilot, "ship it")
        await pilot.press("enter", "enter")  # to Confirm, then confirm
        await settle(pilot)
        assert "✗ refused: soak; nothing was committed" in shown(dialog.query_one("#outcome"))
        assert "✗ soak" in shown(dialog.query_one("#checks"))
        assert remote.head == head
        await pilot.click("#force")
        await pilot.click("#confirm")
        await settle(pilot)
        assert "override: soak" in shown(dialog.query_one("#outcome"))

    drive(app, scenario)
    assert "Qrelease-Override: soak" in remote.git("log", "-1", "--format=%B", "main")


def test_promoting_to_the_pinned_version_is_explained_and_cannot_be_confirmed(
    remote: Remote,
) -> None:
    app = remote.app()

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("right", "right", "p")  # prod has no downstream: promote into prod
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, PromoteDialog)
        assert dialog.query_one("#env", Select).value == "prod"
        assert dialog.query_one("#version", Select).value == "1.1.0"  # Healthy in staging
        dialog.query_one("#version", Select).value = "1.0.0"
        await settle(pilot)
        text = shown(dialog.query_one("#checks"))
        assert "bell-service is already pinned to 1.0.0 in prod" in text
        await pilot.click("#reason")
        await type_text(pilot, "x")
        assert dialog.query_one("#confirm", Button).disabled

    drive(app, scenario)


def test_rollback_pins_the_last_healthy_release(remote: Remote) -> None:
    remote.promote("bell-service", "staging", "try 1.2.0", LATER)
    remote.reconcile(LATER)
    app = remote.app(now=LATER + timedelta(minutes=5))
    head = remote.head

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("right", "r")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, RollbackDialog)
        assert dialog.query_one("#env", Select).value == "staging"
        assert dialog.query_one("#version", Select).value == "1.1.0"
        assert "✓ manifest-valid" in shown(dialog.query_one("#checks"))
        assert "apps.bell-service: 1.2.0 -> 1.1.0 in releases/staging.yaml" in shown(
            dialog.query_one("#plan")
        )
        await type_text(pilot, "1.2.0 misbehaves")
        await pilot.press("enter")
        await settle(pilot)
        assert remote.head == head  # Enter in the reason only moves to Confirm
        confirm = dialog.query_one("#confirm", Button)
        assert confirm.has_focus and str(confirm.label) == "Confirm: roll staging back to 1.1.0"
        await pilot.press("enter")
        await settle(pilot)
        assert "✓ rollback bell-service 1.2.0 -> 1.1.0 in staging" in shown(
            dialog.query_one("#outcome")
        )

    drive(app, scenario)
    assert remote.head != head
    message = remote.git("log", "-1", "--format=%B", "main")
    assert "Qrelease-Action: rollback" in message and "Qrelease-To: 1.1.0" in message
    assert "bell-service: 1.1.0" in remote.git("show", "main:releases/staging.yaml")


def test_a_release_whose_gates_failed_is_marked_and_never_proposed(remote: Remote) -> None:
    remote.quantum.failing_programs["manifests/bell-service/programs/bell_reset.qs"] = "no"
    remote.promote("bell-service", "staging", "try 1.2.0", LATER)
    remote.reconcile(LATER)  # staging's profile gate fails for 1.2.0: 1.1.0 keeps running
    app = remote.app(now=LATER + timedelta(minutes=5))

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("p")  # from dev: 1.2.0 runs Healthy there, but its gates failed
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, PromoteDialog)
        select = dialog.query_one("#version", Select)
        assert select.value == Select.NULL  # not proposed
        note = shown(dialog.query_one("#checks"))
        assert "Not proposing 1.2.0 (✗ gates failed: profile): choose a version." in note
        assert dialog.query_one("#confirm", Button).disabled
        select.focus()
        await pilot.press("enter")  # open the picker, as a user would
        overlay = select.query_one(SelectOverlay)
        prompts = [str(overlay.get_option_at_index(i).prompt) for i in range(overlay.option_count)]
        assert prompts[1:] == [
            "1.2.0  ✗ gates failed: profile",
            "1.1.0  ✓ gates passed",
            "1.0.0  ✓ gates passed",
        ]

    drive(app, scenario)


@pytest.mark.parametrize("key", ["p", "r"])
def test_a_reason_typed_at_once_lands_in_the_reason(remote: Remote, key: str) -> None:
    app = remote.app()

    async def scenario(pilot: Pilot[None]) -> None:
        app.post_message(events.Key(key, key))
        while not isinstance(app.screen, PinDialog):  # pushed: still composing, nothing focused
            await asyncio.sleep(0)
        assert app.screen.focused is None
        for char in "quick":  # a fast typist: keys land while the dialog appears
            app.post_message(events.Key(char, char))
        await settle(pilot)
        assert isinstance(app.screen, PinDialog)
        assert app.screen.query_one("#reason", Input).value == "quick"

    drive(app, scenario)
    assert app.return_code is None or app.return_code == 0


@pytest.mark.parametrize("key", ["p", "r"])
def test_escape_cancels_a_dialog_and_nothing_changes(remote: Remote, key: str) -> None:
    app = remote.app()
    head, events = remote.head, remote.event_count()

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press(key)
        await settle(pilot)
        assert isinstance(app.screen, PinDialog)
        await pilot.click("#reason")
        await type_text(pilot, "changed my mind")
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)

    drive(app, scenario)
    assert remote.head == head
    assert remote.event_count() == events


def test_dialog_fits_80x24(remote: Remote) -> None:
    app = remote.app(now=DEPLOYED_AT + timedelta(minutes=1))

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("p")
        await settle(pilot)
        for selector in ("#env", "#version", "#checks", "#reason", "#force", "#confirm"):
            region = app.screen.query_one(selector).region
            assert region.height > 0 and region.bottom <= 24 and region.right <= 80, selector

    drive(app, scenario, size=(80, 24))


# -- history and diff ---------------------------------------------------------------------


def test_history_screen_shows_the_timeline_and_filters_it(remote: Remote) -> None:
    app = remote.app()

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("h")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        table = screen.query_one("#history", DataTable)
        total = table.row_count
        assert total == len(screen.rows) > 0
        actions = {str(table.get_row_at(i)[3]) for i in range(total)}
        assert {"deploy", "gate", "pin"} <= actions  # controller events and Git pin changes
        await pilot.press("slash")
        await type_text(pilot, "qrng prod")
        assert table.row_count == 0  # no single column holds "qrng prod"
        await pilot.press(*["backspace"] * 5)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert 0 < len(rows) < total and all(row[2] == "qrng" for row in rows)
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, MainScreen)

    drive(app, scenario)


def test_a_history_entry_opens_in_full_with_its_gate_results(remote: Remote) -> None:
    reason = "feed-forward Bell pairs: the correction halves the error budget of every pair " * 2
    remote.promote("bell-service", "staging", reason.strip(), LATER)
    commit = remote.head
    remote.reconcile(LATER)
    app = remote.app()

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("h")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        await pilot.press("slash")
        await type_text(pilot, "promote")
        await pilot.press("enter")  # back to the table, filtered
        table = screen.query_one("#history", DataTable)
        assert table.has_focus and table.row_count == 1
        assert table.columns["reason"].width == 60 < len(reason.strip())  # cut on screen
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, EntryScreen) and app.screen.gates)
        entry = app.screen
        assert isinstance(entry, EntryScreen)
        text = " ".join(shown(entry.query_one("#entry-fields")).split())
        assert f"reason {reason.strip()}" in text  # whole, wrapped, never cut
        assert "actor Ada <ada@example.test>" in text
        assert f"commit {commit}" in text
        assert "change 1.1.0 → 1.2.0" in text
        gates = shown(entry.query_one("#entry-gates"))
        for gate in ("estimate", "profile", "smoke"):
            assert gate in gates
        assert gates.count("✓ Passed") == 3
        await pilot.press("escape")
        assert app.screen is screen

    drive(app, scenario)


def test_diff_screen_compares_two_releases(remote: Remote) -> None:
    app = remote.app()

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("right", "d")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DiffScreen)
        assert screen.query_one("#old", Select).value == "1.1.0"
        assert screen.query_one("#new", Select).value == "1.2.0"
        table = screen.query_one("#diff-fields", DataTable)
        fields = {row[0]: row[1:] for row in (table.get_row_at(i) for i in range(table.row_count))}
        assert fields["quantum.target.profile"] == ["Base", "Adaptive_RI"]
        assert "+        if first == One {" in shown(screen.query_one("#diff-text"))
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)

    drive(app, scenario)


def test_quit_key_exits(remote: Remote) -> None:
    app = remote.app()

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("q")

    drive(app, scenario)
    assert app.return_code == 0


def test_a_held_change_shows_its_approvals_and_is_approved_from_the_screen(
    remote: Remote,
) -> None:
    approvals = "  approvals: {required: 1, approvers: [author@example.test]}\n"
    remote.push_edit(
        "releases/prod.yaml",
        "  auto_rollback: true\n",
        "  auto_rollback: true\n" + approvals,
        "approvals",
    )
    remote.push_edit("releases/prod.yaml", "bell-service: 1.0.0", "bell-service: 1.1.0", "by hand")
    soaked = LATER + timedelta(hours=2)
    remote.reconcile(soaked)  # held: nobody has approved 1.1.0 for prod yet
    app = remote.app(now=soaked)

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("right", "right")
        assert cells(app)[("bell-service", "prod")] == "1.0.0 → 1.1.0 ↻●…"
        await pilot.press("enter")
        await settle(pilot)
        pane = shown(app.screen.query_one("#detail-body"))
        assert "held by policy" in pane and "approvals: 0 of 1 approvals" in pane
        assert "Approvals (1 required" in pane and "nobody has approved" in pane
        await pilot.press("a")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ApproveDialog)
        await type_text(pilot, "looked at the diff")
        await pilot.click("#approve")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        pane = app.screen.query_one("#detail-body")
        await until(pilot, lambda: "author@example.test" in shown(pane))

    drive(app, scenario)
    remote.reconcile(soaked + timedelta(minutes=1))  # the controller counts the approval
    with open_store(remote.state) as store:
        row = store.get_observed("prod", "bell-service")
    assert row is not None and row.deployed == "1.1.0"

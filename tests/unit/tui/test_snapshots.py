"""SVG snapshots of the TUI's main screens, over the same real remote and store as test_tui.

Deterministic by construction: a fixed clock, fixed commit identity and dates, a fixed
terminal size, no paths on screen, no blinking cursor in the captured frame, and the
revision in the status line masked (it hashes the bundled examples, which other changes
touch). Regenerate after a deliberate change with
`pytest tests/unit/tui/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
import pytest_textual_snapshot
from textual.pilot import Pilot
from textual.widgets import Input, Static

from qrelease.model.vocabulary import Health, Rollout, Sync
from qrelease.store import open_store
from qrelease.tui.board import headline
from qrelease.tui.screens.entry import EntryScreen, entry_fields_table
from qrelease.tui.screens.history import HistoryScreen
from qrelease.tui.screens.main import MainScreen
from qrelease.tui.screens.pin import PinDialog
from qrelease.tui.widgets.detail import DetailPane
from tests.helpers.tui import LATER, SIZE, Remote, settle, type_text, until

SnapCompare = Callable[..., bool]


@pytest.fixture(autouse=True)
def svg_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Store snapshots as .svg files.

    pytest-textual-snapshot 1.0 sets `_file_extension`, but the syrupy installed here (7.x)
    reads `file_extension`, so without this the SVGs would be saved as `.raw`.
    """
    monkeypatch.setattr(pytest_textual_snapshot.SVGImageExtension, "file_extension", "svg")


def steps(
    *keys: str,
    ready: Callable[[Pilot[Any]], object] = lambda pilot: True,
    reason: str = "",
) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Settle, press `keys`, wait until `ready`, optionally type a reason, settle again."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press(*keys)
        await until(pilot, lambda: ready(pilot))
        if reason:
            await type_text(pilot, reason)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False  # a blinking cursor would make the frame random
        mask_revision(pilot)
        await settle(pilot)

    return run_before


def mask_revision(pilot: Pilot[Any]) -> None:
    """Show `<revision>` for the commit id: it hashes the bundled examples, which evolve."""
    main = pilot.app.screen_stack[0]
    assert isinstance(main, MainScreen) and main.board is not None
    text = headline(main.board, LATER).replace(main.board.revision[:10], "<revision>")
    main.query_one("#status", Static).update(text)


def details_shown(pilot: Pilot[Any]) -> bool:
    return pilot.app.screen.query_one(DetailPane).details is not None


def preview_shown(pilot: Pilot[Any]) -> bool:
    screen = pilot.app.screen
    return isinstance(screen, PinDialog) and screen.preview is not None


def choices_marked(pilot: Pilot[Any]) -> bool:
    screen = pilot.app.screen
    return isinstance(screen, PinDialog) and bool(screen.verdicts)


def entry_shown(pilot: Pilot[Any]) -> bool:
    screen = pilot.app.screen
    return isinstance(screen, EntryScreen) and screen.gates is not None


def history_shown(pilot: Pilot[Any]) -> bool:
    screen = pilot.app.screen
    return isinstance(screen, HistoryScreen) and bool(screen.rows)


def test_main_screen(remote: Remote, snap_compare: SnapCompare) -> None:
    assert snap_compare(remote.app(), terminal_size=SIZE, run_before=steps())


def test_detail_pane(remote: Remote, snap_compare: SnapCompare) -> None:
    run_before = steps("right", "enter", ready=details_shown)
    assert snap_compare(remote.app(), terminal_size=SIZE, run_before=run_before)


def test_promote_dialog(remote: Remote, snap_compare: SnapCompare) -> None:
    app = remote.app()
    run_before = steps("p", ready=preview_shown, reason="feed-forward Bell pairs")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_history_screen(remote: Remote, snap_compare: SnapCompare) -> None:
    remote.promote("bell-service", "staging", "feed-forward Bell pairs", LATER)
    run_before = steps("h", ready=history_shown)
    assert snap_compare(remote.app(), terminal_size=SIZE, run_before=run_before)


def test_main_screen_without_colour(
    remote: Remote, snap_compare: SnapCompare, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")  # the cursor is ▶ and reversed, never colour alone
    assert snap_compare(remote.app(), terminal_size=SIZE, run_before=steps("down", "right"))


def test_running_rollout_cell(remote: Remote, snap_compare: SnapCompare) -> None:
    remote.promote("bell-service", "staging", "feed-forward Bell pairs", LATER)
    with open_store(remote.state) as store:
        before = store.get_observed("staging", "bell-service")
        assert before is not None
        running = {"desired": "1.2.0", "health": Health.PROGRESSING, "sync": Sync.OUT_OF_SYNC}
        running |= {"rollout": Rollout.RUNNING, "rollout_step": "quantum gates"}
        store.put_observed(before.model_copy(update=running))
    assert snap_compare(remote.app(), terminal_size=SIZE, run_before=steps())


def test_version_picker_marks_failed_gates(remote: Remote, snap_compare: SnapCompare) -> None:
    remote.quantum.failing_programs["manifests/bell-service/programs/bell_reset.qs"] = "no"
    remote.promote("bell-service", "staging", "try 1.2.0", LATER)
    remote.reconcile(LATER)

    async def run_before(pilot: Pilot[Any]) -> None:
        await steps("p", ready=choices_marked)(pilot)
        pilot.app.screen.query_one("#version").focus()
        await pilot.press("enter")  # the picker opens over the dialog
        await settle(pilot)

    assert snap_compare(remote.app(), terminal_size=SIZE, run_before=run_before)


def test_history_entry(remote: Remote, snap_compare: SnapCompare) -> None:
    reason = "feed-forward Bell pairs: the correction halves the error budget of every pair"
    remote.promote("bell-service", "staging", reason, LATER)
    remote.reconcile(LATER)

    async def run_before(pilot: Pilot[Any]) -> None:
        await steps("h", ready=history_shown)(pilot)
        await pilot.press("slash", *"promote", "enter", "enter")
        await until(pilot, lambda: entry_shown(pilot))
        screen = pilot.app.screen
        assert isinstance(screen, EntryScreen)  # ids hash the bundled examples, which evolve
        masked = replace(screen.entry, revision="<commit>", hash="<event hash>")
        screen.query_one("#entry-fields", Static).update(entry_fields_table(masked))
        await settle(pilot)

    assert snap_compare(remote.app(), terminal_size=SIZE, run_before=run_before)

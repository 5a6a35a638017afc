"""A checkbox whose mark shows its state, so `--force` reads correctly without colour."""

from __future__ import annotations

from textual.widgets import Checkbox


class MarkedCheckbox(Checkbox):
    """Shows `X` when ticked and a blank when not (Textual's shows `X` either way, in colour)."""

    BUTTON_INNER = " "

    def watch_value(self) -> None:
        """Redraw the mark, then let the checkbox post its Changed message."""
        self.BUTTON_INNER = "X" if self.value else " "
        super().watch_value()

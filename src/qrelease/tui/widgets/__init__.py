"""Widgets the screens are built from: the matrix, the detail pane, and shared renderings."""

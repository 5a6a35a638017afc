"""The Textual UI: the release manager's everyday screen for watching, promoting and rolling back.

Textual enters the project only here (an import-linter contract says so), and only when the
UI runs: `qrelease.tui.data` holds everything the screens show or do without importing it,
so the CLI and the tests of that layer never load textual.
"""

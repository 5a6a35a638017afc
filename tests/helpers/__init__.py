"""Shared test helpers: git work trees, small wheels, fake Azure services, daemon and TUI rigs.

Test modules import from here, never from each other.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The checkout: its manifests/, releases/ and examples/ are the bundled examples."""

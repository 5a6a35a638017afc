"""Run as `python -m qrng`."""

from qrng.cli import main

raise SystemExit(main())

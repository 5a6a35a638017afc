"""Run as `python -m bell_service`."""

from bell_service.cli import main

raise SystemExit(main())

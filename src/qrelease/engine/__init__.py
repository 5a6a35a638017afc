"""The reconcile pass: observe, plan (pure, in `planning/`), roll out, record, report.

`Engine` (reconcile.py) owns every pass and returns a `PassReport` (report.py), which one
`Finaliser` records and hands to the daemon's metrics and view. `observe.py` reads what
is deployed and available; `rollout.py` carries one release through its steps;
`record.py` writes rows and audit events together.
"""

from qrelease.engine.backends import Backends
from qrelease.engine.reconcile import Engine, utcnow
from qrelease.engine.report import AppReport, Finaliser, PassReport, ReportSink, RowSink

__all__ = [
    "AppReport",
    "Backends",
    "Engine",
    "Finaliser",
    "PassReport",
    "ReportSink",
    "RowSink",
    "utcnow",
]

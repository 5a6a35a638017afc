"""The read-only web view the controller serves at `/`: server-rendered, no JavaScript.

`pages` decides what is shown (pure), `data` reads the store and the Git mirror on a
thread of its own, `app` holds the Starlette routes, the access rules and the Jinja2
templates (`templates/`, one stylesheet in `static/`).
"""

from __future__ import annotations

from qrelease.web.app import WebSite
from qrelease.web.pages import Live

__all__ = ["Live", "WebSite"]

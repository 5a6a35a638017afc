"""Fixtures of the Azure tests."""

from __future__ import annotations

import pytest
from azure.core.pipeline.transport import HttpTransport


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait the SDK's retry policy asks its transport for, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(HttpTransport, "sleep", lambda self, duration: waits.append(duration))
    return waits

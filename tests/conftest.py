"""Shared fixtures: the project's sample events and settings built the way the responder builds them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from guardrail.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def load_event(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / relative).read_text())
    return data


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({})


@pytest.fixture(autouse=True)
def _no_real_aws(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may reach a real account by accident; moto and the local servers are the only AWS here,
    # except the live tests marked aws, which run only with `pytest -m aws`.
    if request.node.get_closest_marker("aws"):
        return
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

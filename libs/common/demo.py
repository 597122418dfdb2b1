"""The demo test a new installation starts with: created by `callmeter up` with its
CALLMETER_API_KEYS key, or when the first administrator claims the installation."""

from __future__ import annotations

from typing import Any

DEMO_TEST: dict[str, Any] = {
    "name": "Demo: 4 phones call 4 phones (direct, G.711)",
    "duration_s": 20,
    "buildup_s": 2,
    "groups": [
        {"name": "A", "endpoints": 4, "codecs": ["PCMU"], "calls": "B"},
        {"name": "B", "endpoints": 4, "codecs": ["PCMU"]},
    ],
}

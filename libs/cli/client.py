"""A small client for the JSON API, used by the CLI commands."""

from __future__ import annotations

import os
from typing import Any

import httpx


class ApiError(RuntimeError):
    pass


class Client:
    def __init__(self, base_url: str | None = None, api_key: str | None = None) -> None:
        base = base_url or os.environ.get("CALLMETER_API_URL", "http://127.0.0.1:8000")
        key = api_key or os.environ.get("CALLMETER_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.keyless = not key
        self.http = httpx.Client(base_url=base.rstrip("/") + "/api/v1", headers=headers, timeout=30)

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        try:
            resp = self.http.request(method, path, json=body, params=params or None)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the API at {self.http.base_url}: {exc}") from None
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                where = f" ({err['field']})" if err.get("field") else ""
                hint = ""
                if resp.status_code == 401 and self.keyless:
                    hint = " (set CALLMETER_API_KEY or pass --api-key: every API call needs a key)"
                raise ApiError(f"{resp.status_code} {err['code']}{where}: {err['message']}{hint}")
            except (ValueError, KeyError, TypeError):
                raise ApiError(f"{resp.status_code}: {resp.text[:300]}") from None
        if resp.status_code == 204 or not resp.content:
            return None
        if "json" in resp.headers.get("content-type", ""):
            return resp.json()
        return resp.content

    def find_test(self, name: str) -> dict[str, Any] | None:
        items = self.call("GET", "/tests", limit=1000)["items"]
        return next((t for t in items if t["definition"]["name"] == name), None)

    def save_test(self, definition: dict[str, Any]) -> str:
        """Create the test, or update the one with the same name."""
        existing = self.find_test(definition["name"])
        if existing:
            self.call("PUT", f"/tests/{existing['test_id']}", definition)
            return str(existing["test_id"])
        return str(self.call("POST", "/tests", definition)["id"])

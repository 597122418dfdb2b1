"""API service: uvicorn serving the app (pages + /api/v1)."""

from __future__ import annotations

import uvicorn

from callmeter_common.runtime import setup_logging

from .app import create_app
from .settings import ApiSettings


def main() -> None:
    setup_logging("api")
    settings = ApiSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()

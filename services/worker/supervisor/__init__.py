"""The worker supervisor: asyncio service that places endpoints into endpoint hosts."""

"""fleet_api: the HTTP and WebSocket API of taskfleet (aiohttp)."""

"""A typed client of the taskfleet API (docs/integrating.md), importable with aiohttp,
pydantic and tenacity alone: no database or broker driver (pyproject.toml's import contract
"The client needs only HTTP")."""

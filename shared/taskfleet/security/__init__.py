"""Sealing sensitive fields and signing tokens: pure, below the store so the store can seal."""

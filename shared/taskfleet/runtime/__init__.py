"""What one process owns: its kernel of parts, heartbeat, memory guard, health, reconciler."""

"""PostgreSQL: the pool and row security, task transitions, batching, quotas, migrations."""

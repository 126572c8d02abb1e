"""tool-worker: consumes tool_executions: runs the agent's tool calls."""

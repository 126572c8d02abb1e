"""chat-worker: consumes chat_tasks and answers each chat message with the configured LLM."""

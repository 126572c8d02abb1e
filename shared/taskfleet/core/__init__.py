"""Vocabulary and process basics every layer shares: settings, errors, messages, metrics."""

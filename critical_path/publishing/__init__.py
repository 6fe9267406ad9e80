"""Committed jobs onto the broker, used by web processes, workers and relays alike."""

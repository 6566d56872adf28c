"""Sending top-ups to the provider: the shared gate in front of it."""

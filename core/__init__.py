"""Core: models, inversion, hookspecs, plugin manager and CLI."""

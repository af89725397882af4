"""Built-in edit plugins."""

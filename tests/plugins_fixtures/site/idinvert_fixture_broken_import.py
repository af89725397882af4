"""A plugin that fails to import."""

raise RuntimeError("fixture plugin exploded at import")

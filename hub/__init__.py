"""Hub: model registry, download/publish, official-checkpoint conversion."""

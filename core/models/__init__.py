"""Network definitions: generator, encoder, perceptual net."""

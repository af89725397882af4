"""The inversion core: networks, losses, inversion, images, codes, boundaries, model
directories, edit math and declarations, hookspecs and the plugin manager."""

"""The `idinvert` command line: the only package that knows every subcommand (see main.py).

It sits on top of every other layer: core, plugins, hub, training and demo never import it.
"""

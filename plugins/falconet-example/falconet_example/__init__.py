"""falconet-example: the template plugin. See README.md; copy the package and rename it."""

__version__ = "0.1.0"

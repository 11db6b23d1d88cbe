"""The package version, in a module of its own so the HTTP layer can name it without
importing the package (and, through it, every module)."""

__version__ = "0.1.0"

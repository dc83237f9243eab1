"""stliif: continuous space-time super-resolution of satellite imagery."""

__version__ = "0.1.0"

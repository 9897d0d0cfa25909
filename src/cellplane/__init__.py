"""Cellplane: a self-hosted cloud-native application platform."""

__all__ = ["__version__"]

__version__ = "0.1.0"

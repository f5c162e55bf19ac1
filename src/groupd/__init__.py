"""groupd: a self-hosted group directory service."""

__version__ = "0.1.0"

"""Orchestra: a self-hosted distributed job execution service."""

__version__ = "0.1.0"

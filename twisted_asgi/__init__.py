"""twisted-asgi: a production ASGI server on Twisted."""

__version__ = "0.1.0"

"""Management commands of the twisted-asgi Django app."""

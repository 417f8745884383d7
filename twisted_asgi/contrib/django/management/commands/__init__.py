"""``runserver``, served through twisted-asgi."""

"""The benchmark's Django view."""

from django.http import HttpRequest, HttpResponse


async def hello(request: HttpRequest) -> HttpResponse:
    """A small text response, as an async view (no thread hop for the view itself)."""
    return HttpResponse(b"Hello, world!", content_type="text/plain")

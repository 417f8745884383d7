import asyncio

from channels.layers import get_channel_layer
from django.http import HttpResponse


async def healthz(request):
    """200 when this process serves and reaches the channel layer, else 503."""
    layer = get_channel_layer()
    try:
        async with asyncio.timeout(2):
            channel = await layer.new_channel()
            await layer.send(channel, {"type": "health.check"})
            await layer.receive(channel)
    except Exception as exc:  # Redis down or too slow: send traffic elsewhere.
        return HttpResponse(f"channel layer unavailable: {type(exc).__name__}\n", status=503)
    return HttpResponse("ok\n", content_type="text/plain")

"""Views the end-to-end tests request: sync, async, streaming, upload, and
views that show what happens when a client goes away."""

import asyncio
import hashlib
import json
import os
import random
import threading

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

#: Keys of /wait/ requests that started, and of those Django cancelled.
STARTED: set[str] = set()
CANCELLED: set[str] = set()
#: Events that /stream/async/ waits on, set by /release/.
RELEASES: dict[str, asyncio.Event] = {}


def _release_event(key: str) -> asyncio.Event:
    return RELEASES.setdefault(key, asyncio.Event())


def sync_view(request):
    """A sync view: runs in a worker thread, not the event loop's."""
    in_loop_thread = threading.current_thread() is threading.main_thread()
    return HttpResponse(f"sync {request.method} main_thread={in_loop_thread}", content_type="text/plain")


async def async_view(request):
    """An async view: runs on the event loop."""
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    return HttpResponse(f"async {request.method} loop={type(loop).__name__}", content_type="text/plain")


async def echo_view(request):
    """Answers with the request's id and body after a random short wait, so that
    concurrent requests finish out of order."""
    await asyncio.sleep(random.random() / 50)
    payload = {"id": request.GET.get("id"), "body": request.body.decode(), "pid": os.getpid()}
    return JsonResponse(payload)


# What @csrf_exempt sets; the decorator itself wraps async views only from Django 5.0 on.
echo_view.csrf_exempt = True


@csrf_exempt
def sync_echo_view(request):
    """The sync twin of :func:`echo_view`."""
    return JsonResponse({"id": request.GET.get("id"), "body": request.body.decode(), "pid": os.getpid()})


def stream_sync_view(request):
    """Streams ``n`` numbered lines from a sync iterator."""
    count = int(request.GET.get("n", "10"))
    return StreamingHttpResponse((f"line {i}\n" for i in range(count)), content_type="text/plain")


async def stream_async_view(request):
    """Streams from an async iterator: one line, then waits for /release/ with
    the same key before the last line, so a test can see the first line arrive
    while the view is still running."""
    key = request.GET["key"]
    event = _release_event(key)

    async def lines():
        yield "first\n"
        await asyncio.wait_for(event.wait(), 30)
        yield "second\n"

    return StreamingHttpResponse(lines(), content_type="text/plain")


async def release_view(request):
    """Lets the /stream/async/ response with this key finish."""
    _release_event(request.GET["key"]).set()
    return HttpResponse("released")


@csrf_exempt
def upload_view(request):
    """Receives a multipart file upload; answers with its size, SHA-256 and
    where Django kept it (a temporary file for large ones)."""
    upload = request.FILES["file"]
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    return JsonResponse(
        {
            "size": upload.size,
            "sha256": digest.hexdigest(),
            "class": type(upload).__name__,
            "on_disk": hasattr(upload, "temporary_file_path"),
        }
    )


async def wait_view(request):
    """Waits until Django cancels it (its client went away), and records that."""
    key = request.GET["key"]
    STARTED.add(key)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        CANCELLED.add(key)
        raise
    return HttpResponse("never")


async def status_view(request):
    """Whether the /wait/ request with this key started, and was cancelled."""
    key = request.GET["key"]
    return HttpResponse(json.dumps({"started": key in STARTED, "cancelled": key in CANCELLED}))

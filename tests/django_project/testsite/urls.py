"""URLs of the test project."""

import os

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("sync/", views.sync_view),
    path("async/", views.async_view),
    path("echo/", views.echo_view),
    path("sync-echo/", views.sync_echo_view),
    path("stream/sync/", views.stream_sync_view),
    path("stream/async/", views.stream_async_view),
    path("release/", views.release_view),
    path("upload/", views.upload_view),
    path("wait/", views.wait_view),
    path("status/", views.status_view),
]

# Static files (the admin's included) from the app directories, in DEBUG, when
# $TESTSITE_STATIC_URLS is set: so that `--django` serves them, while under
# runserver only runserver's own static files handler does.
if os.environ.get("TESTSITE_STATIC_URLS"):
    urlpatterns += staticfiles_urlpatterns()

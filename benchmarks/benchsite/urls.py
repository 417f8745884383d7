"""One route: the benchmark's view."""

from django.urls import path

from . import views

urlpatterns = [path("", views.hello)]

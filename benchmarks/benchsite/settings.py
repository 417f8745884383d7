"""Settings of the benchmark's Django project: no database, the usual response middleware."""

SECRET_KEY = "benchmark-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchsite.urls"
INSTALLED_APPS: list[str] = []
# What a new project's response path runs through, minus sessions/auth/CSRF (they need
# a database or a form); both are async-capable, so no thread hop per middleware.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
DATABASES: dict = {}
USE_TZ = True
LOGGING_CONFIG = None

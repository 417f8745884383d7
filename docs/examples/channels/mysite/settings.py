"""Settings of a Django project whose WebSockets are served by Channels on
several hosts, the hosts sharing one Redis channel layer."""

import os

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
# The names clients use, and the address a balancer's health check sends as Host.
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "example.com").split(",")

INSTALLED_APPS = ["chat"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "mysite.urls"
DATABASES: dict = {}
TIME_ZONE = "UTC"
USE_TZ = True

# Every host, and every worker process of every host, talks to the same Redis.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                    # channels_redis waits up to 5 s for a message (BZPOPMIN); redis-py 8
                    # gives up reading after 5 s by default, which ends idle consumers
                    # with 1011. Keep the socket timeout above the wait.
                    "socket_timeout": 10,
                },
            ],
        },
    },
}

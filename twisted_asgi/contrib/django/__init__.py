"""The twisted-asgi Django app.

Put ``"twisted_asgi.contrib.django"`` in ``INSTALLED_APPS`` (above
``django.contrib.staticfiles``) and ``manage.py runserver`` serves the project
through twisted-asgi, with Django's autoreloader and, in ``DEBUG``, static files.
:mod:`.signals` holds the signals that :func:`twisted_asgi.django.lifespan_handler`
sends; they work whether or not the app is installed.
"""

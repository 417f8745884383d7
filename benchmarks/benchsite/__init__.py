"""A tiny Django project that every server in the benchmark serves (the "django" scenario)."""

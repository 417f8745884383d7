"""A small real Django project the Django adapter tests serve end to end."""

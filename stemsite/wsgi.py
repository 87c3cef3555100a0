"""WSGI entry point, for management tools only: the site itself runs under ASGI (asgi.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stemsite.settings")

application = get_wsgi_application()

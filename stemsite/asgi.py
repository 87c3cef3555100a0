"""ASGI entry point: HTTP through Django, websockets through Channels, both under daphne."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stemsite.settings")

import django  # noqa: E402

django.setup(set_prefix=False)

from jobs import tracing  # noqa: E402

# Before Django builds its middleware chain: the Django instrumentation adds its own to it.
tracing.setup("web")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from jobs.realtime.routing import websocket_urlpatterns  # noqa: E402
from jobs.upload_limits import RequestBodyLimit, limit_daphne_request_bodies, max_body_bytes  # noqa: E402

# Under daphne, the body limit must act inside the server, which reads the whole body first.
limit_daphne_request_bodies(max_body_bytes())

application = ProtocolTypeRouter(
    {
        "http": RequestBodyLimit(django_asgi_app, max_body_bytes()),
        "websocket": tracing.websocket_app(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)

# A full garbage collection walks every object in the process: Django's and Twisted's, and a
# consumer's per open page. Under 500 open pages one took 250-500 ms and stalled every push
# (bench/push.py). What start-up made lives forever, so it leaves the collector's view, and full
# collections run a tenth as often; young objects are still collected as usual.
gc.freeze()
gc.set_threshold(700, 10, 100)

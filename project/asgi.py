import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Django must be set up before anything imports models.
django.setup(set_prefix=False)

import autobahn.util  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from core.handlers import SyncASGIHandler  # noqa: E402
from core.process import open_files_limit_raise  # noqa: E402
from realtime.publish import serve_on_this_loop  # noqa: E402
from realtime.relay import relay_start  # noqa: E402
from realtime.routing import websocket_app  # noqa: E402

# Every socket is an open file.
open_files_limit_raise()
# Daphne's autobahn builds the arguments of a debug line for every frame it
# sends, logging on or off, and colours them when click is importable (the
# dev requirements bring it): a tenth of the CPU of a fan-out. Uncoloured,
# they cost a little.
autobahn.util._HAS_CLICK = False

application = serve_on_this_loop(ProtocolTypeRouter({"http": SyncASGIHandler(), "websocket": websocket_app}))

# Every web process runs a relay: on PostgreSQL one leads and the others stand by.
relay_start()

if not settings.REDIS_URL:
    # Embedded mode: no separate worker processes, so this one delivers.
    from notify.embedded import embedded_worker_start

    embedded_worker_start()

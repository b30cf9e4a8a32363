"""Django's ASGI handler, with the hub's middleware and views run as the
sync code they are: the whole request in one thread, one hop from the
event loop and back, and at most HTTP_THREADS requests at a time.

Django's own handler builds the middleware chain in async mode, so under an
ASGI server each middleware that can run either way (every MiddlewareMixin
one: sessions, CSRF, auth, messages, ...) runs its hooks on the event loop
and hops to a thread and back for each of them, a dozen hops a request.
Each hop needs the event loop thread to take the GIL from threads busy with
other requests, so under load requests queue for the loop rather than for
the CPU. Nothing in the hub's HTTP stack is async, so nothing is lost.

Requests beyond HTTP_THREADS wait on the event loop, where waiting costs
nothing: a thread more would not run sooner (the GIL runs one at a time),
and would make the relay's thread and the sockets' loop wait longer for it.
"""

import asyncio

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler


class SyncASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        self.threads = asyncio.Semaphore(settings.HTTP_THREADS)

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)

    async def get_response_async(self, request):
        async with self.threads:
            # Thread-sensitive within the ThreadSensitiveContext Django opens
            # for each request: its own thread, the one its signals run in too.
            return await sync_to_async(self.get_response, thread_sensitive=True)(request)

from django.db import connection, transaction
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from project.urls import handler400, handler404, handler500  # noqa: F401
from project.urls import urlpatterns as hub_urlpatterns

# As many statements as an order create sends inside its transaction.
WRITE_STATEMENTS = 8


def bare(request):
    """Django's request path and middleware, and no work of the hub's own."""
    return JsonResponse({"ok": True})


@csrf_exempt
def bare_write(request):
    """The floor under an order create: the bare view plus a transaction of
    as many statements, one of them an insert, sent as raw SQL with no ORM,
    serializer or hub code. bench/load.py makes its table."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_write (body) VALUES (%s) RETURNING id", ["load"])
        (row_id,) = cursor.fetchone()
        for _ in range(WRITE_STATEMENTS - 1):
            cursor.execute("SELECT id, body FROM bench_write WHERE id = %s", [row_id])
    return JsonResponse({"id": row_id}, status=201)


urlpatterns = [
    path("bench/bare/", bare, name="bench-bare"),
    path("bench/bare/write/", bare_write, name="bench-bare-write"),
    *hub_urlpatterns,
]

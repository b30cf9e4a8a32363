"""Health checks: each answers (ok, reason) and never raises."""

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.authentication import OptionalTokenAuthentication


def database_check():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return False, f"database unreachable: {exc}".strip()
    return True, ""


def redis_check():
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=settings.REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=settings.REDIS_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return False, f"redis unreachable: {exc}"
    finally:
        client.close()
    return True, ""


def _no_worker_reason():
    return f"no worker has sent a heartbeat in {settings.WORKER_HEARTBEAT_TIMEOUT_SECONDS:g} s"


def worker_check():
    from notify.heartbeat import heartbeats_recent

    try:
        workers = heartbeats_recent()
    except redis.RedisError as exc:
        return False, f"worker heartbeats unreadable: {exc}"
    return (True, "") if workers else (False, _no_worker_reason())


def _component(ok, reason):
    return {"ok": ok, "reason": reason} if reason else {"ok": ok}


component_schema = openapi.Schema(
    type=openapi.TYPE_OBJECT,
    properties={"ok": openapi.Schema(type=openapi.TYPE_BOOLEAN), "reason": openapi.Schema(type=openapi.TYPE_STRING)},
)
health_schema = openapi.Schema(
    type=openapi.TYPE_OBJECT,
    properties={
        "status": openapi.Schema(type=openapi.TYPE_STRING, enum=["ok", "unhealthy"]),
        "mode": openapi.Schema(type=openapi.TYPE_STRING, enum=["embedded", "services"]),
        "components": openapi.Schema(type=openapi.TYPE_OBJECT, additional_properties=component_schema),
    },
)


def _for(request, body, status):
    """Staff get the details (reasons name hosts; workers, pids; queues, depths); anyone else the bare status."""
    if not request.user.is_staff:
        body = {"status": body["status"]}
    return Response(body, status=status)


_details_note = "Anyone gets `status`; staff also get the details."


class HealthApi(APIView):
    """Public: the hub's status; for staff, one ok flag per component it runs on."""

    authentication_classes = [OptionalTokenAuthentication, SessionAuthentication]
    permission_classes = [AllowAny]

    @swagger_auto_schema(
        operation_summary="System health",
        operation_description=_details_note,
        responses={200: health_schema, 503: openapi.Response("A component is down", health_schema)},
    )
    def get(self, request):
        components = {"database": _component(*database_check())}
        redis_ok = True
        if settings.REDIS_URL:
            redis_ok, reason = redis_check()
            components["redis"] = _component(redis_ok, reason)
        # The heartbeats are in Redis: no second wait on one that is down.
        worker = worker_check() if redis_ok else (False, "worker heartbeats unreadable: redis unreachable")
        components["worker"] = _component(*worker)
        healthy = all(c["ok"] for c in components.values())
        body = {
            "status": "ok" if healthy else "unhealthy",
            "mode": "services" if settings.REDIS_URL else "embedded",
            "components": components,
        }
        return _for(request, body, 200 if healthy else 503)


redis_health_schema = openapi.Schema(
    type=openapi.TYPE_OBJECT,
    properties={
        "status": openapi.Schema(type=openapi.TYPE_STRING, enum=["ok", "unhealthy", "not_configured"]),
        "reason": openapi.Schema(type=openapi.TYPE_STRING),
    },
)


class RedisHealthApi(APIView):
    authentication_classes = [OptionalTokenAuthentication, SessionAuthentication]
    permission_classes = [AllowAny]

    @swagger_auto_schema(
        operation_summary="Redis health",
        operation_description="200 `not_configured` in embedded mode (no `REDIS_URL`). " + _details_note,
        responses={200: redis_health_schema, 503: openapi.Response("Redis is down", redis_health_schema)},
    )
    def get(self, request):
        if not settings.REDIS_URL:
            return _for(request, {"status": "not_configured", "reason": "REDIS_URL is not set (embedded mode)."}, 200)
        ok, reason = redis_check()
        if ok:
            return _for(request, {"status": "ok"}, 200)
        return _for(request, {"status": "unhealthy", "reason": reason}, 503)


worker_health_schema = openapi.Schema(
    type=openapi.TYPE_OBJECT,
    properties={
        "status": openapi.Schema(type=openapi.TYPE_STRING, enum=["ok", "unhealthy"]),
        "reason": openapi.Schema(type=openapi.TYPE_STRING),
        "workers": openapi.Schema(
            type=openapi.TYPE_OBJECT,
            description="worker id -> seconds since its last heartbeat",
            additional_properties=openapi.Schema(type=openapi.TYPE_NUMBER),
        ),
        "last_heartbeat_seconds_ago": openapi.Schema(type=openapi.TYPE_NUMBER, x_nullable=True),
        "queues": openapi.Schema(
            type=openapi.TYPE_OBJECT,
            description="queue -> messages waiting or in flight (`.DQ`: delayed retries)",
            additional_properties=openapi.Schema(type=openapi.TYPE_INTEGER),
        ),
    },
)


class WorkerHealthApi(APIView):
    """Public: whether a notification worker is alive; for staff, their heartbeats and queue depths."""

    authentication_classes = [OptionalTokenAuthentication, SessionAuthentication]
    permission_classes = [AllowAny]

    @swagger_auto_schema(
        operation_summary="Worker health (also at /health/celery/)",
        operation_description=_details_note,
        responses={200: worker_health_schema, 503: openapi.Response("No live worker", worker_health_schema)},
    )
    def get(self, request):
        from notify.heartbeat import heartbeats_recent, queue_depths

        try:
            workers, queues = heartbeats_recent(), queue_depths()
        except redis.RedisError as exc:
            return _for(request, {"status": "unhealthy", "reason": f"redis unreachable: {exc}"}, 503)
        body = {
            "status": "ok" if workers else "unhealthy",
            "workers": workers,
            "last_heartbeat_seconds_ago": min(workers.values()) if workers else None,
            "queues": queues,
        }
        if not workers:
            body["reason"] = _no_worker_reason()
        return _for(request, body, 200 if workers else 503)

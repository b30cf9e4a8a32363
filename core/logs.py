"""The hub's logs: request ids, the line per HTTP request, secret redaction and
the two formats (`LOG_FORMAT`: json or text).

Settings' LOGGING imports this module before the app registry is ready, so it
imports no models and reads settings only when a record is logged.
"""

import contextvars
import logging
import logging.config
import re
import time
import uuid
from contextlib import contextmanager
from functools import lru_cache
from types import SimpleNamespace
from urllib.parse import quote

from django.conf import settings
from django.utils.encoding import escape_uri_path
from django.utils.functional import SimpleLazyObject, empty
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from rest_framework.throttling import BaseThrottle

request_logger = logging.getLogger("hub.request")

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept only if it is short and plain, so a client cannot
# stuff the logs or forge extra fields through it.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_request_id = contextvars.ContextVar("request_id", default=None)

# Record attributes that are not fields of a line: the LogRecord's own, and
# the HttpRequest Django's loggers attach, whose repr carries the query string.
_NOT_FIELDS = frozenset(RESERVED_ATTRS) | {"request", "taskName"}

# A value this short is no real secret, and replacing it everywhere would garble the logs.
_MIN_SECRET_LENGTH = 6
REDACTED = "[redacted]"


def request_id_accept(value):
    """`value` if it is a sane request id (an incoming header), else a new one."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str) and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def request_id_current():
    """The id of the request (or socket, or worker message) being handled, or None."""
    return _request_id.get()


@contextmanager
def request_id_bound(request_id):
    """Log under `request_id` (None for none) inside the block."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def request_id_bind(request_id):
    """Log under `request_id` from now on in this context: a socket's task,
    which ends with the socket."""
    _request_id.set(request_id)


def client_address(remote_addr, forwarded_for=None):
    """The client's address, by the same rule (NUM_PROXIES) as throttling."""
    headers = {} if forwarded_for is None else {"x-forwarded-for": forwarded_for}
    peer = SimpleNamespace(META={"REMOTE_ADDR": remote_addr}, headers=headers)
    return BaseThrottle().get_ident(peer) or None


def logging_configure(config):
    """LOGGING_CONFIG: the LOGGING dict, and Python's warnings logged (as
    `py.warnings`) rather than printed, so they come out in the same format."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


# ---- filters -------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record logged while a request, socket or
    worker message with an id is being handled."""

    def filter(self, record):
        if getattr(record, "request_id", None) is None:
            request_id = _request_id.get()
            if request_id is not None:
                record.request_id = request_id
        return True


@lru_cache(maxsize=8)
def _secret_forms(values):
    forms = set()
    for value in values:
        if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH:
            forms.update((value, quote(value, safe="")))  # as it is, and as it appears in a URL
    return tuple(sorted(forms, key=len, reverse=True))


def _configured_secrets():
    names = ("TELEGRAM_BOT_TOKEN", "EMAIL_HOST_PASSWORD", "SECRET_KEY")
    return _secret_forms(tuple(getattr(settings, name, "") for name in names))


def secrets_redacted(text):
    """`text` with the configured secrets replaced, for text kept elsewhere
    than the logs (an unforeseen error's message, stored and shown by the API)."""
    return _redact(text, _configured_secrets())


def _redact(value, secrets):
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {key: _redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(item, secrets) for item in value)
    return value


class RedactSecretsFilter(logging.Filter):
    """Defence in depth: the bot token, the SMTP password and SECRET_KEY are
    never meant to reach a log call, but if one does (an exception's text, a
    URL) it is replaced in the message, the extra fields and the traceback."""

    def filter(self, record):
        secrets = _configured_secrets()
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: the formatter reports it, with the record as it is
            return True
        redacted = _redact(message, secrets)
        if redacted != message:
            record.msg, record.args = redacted, None
        for key, value in list(vars(record).items()):
            if key not in _NOT_FIELDS:
                setattr(record, key, _redact(value, secrets))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            exc_text = _redact(record.exc_text, secrets)
            if exc_text != record.exc_text:
                # Formatters print exc_text when there is no exc_info to format afresh.
                record.exc_text, record.exc_info = exc_text, None
        if record.stack_info:
            record.stack_info = _redact(record.stack_info, secrets)
        return True


# ---- formatters ------------------------------------------------------------------------


def json_formatter():
    """One JSON object per line: timestamp, level, logger, message, then the
    record's extra fields (and `exc_info` for a traceback)."""
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
        # Defaults come first in the object; the formatter fills in the time, so it leads.
        defaults={"timestamp": None},
        reserved_attrs=sorted(_NOT_FIELDS),
    )


class TextFormatter(logging.Formatter):
    """A line for people: time, level, logger, message, then the extra fields as key=value."""

    def formatMessage(self, record):
        fields = [f"{key}={value}" for key, value in vars(record).items() if key not in _NOT_FIELDS]
        return " ".join([super().formatMessage(record), *fields])


def text_formatter():
    return TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")


# ---- HTTP ---------------------------------------------------------------------------------


def _user_id(request):
    user = getattr(request, "user", None)
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        # Nothing looked at the session's user; loading it now would cost a
        # query (and cannot run on the event loop).
        return None
    return user.pk if user is not None and user.is_authenticated else None


def request_view_name(request):
    """The URL name of the view that answered, as logs and metrics label it;
    `unmatched` for a path no route takes."""
    match = getattr(request, "resolver_match", None)
    return match.view_name if match else "unmatched"


class RequestLogMiddleware:
    """Gives each request an id (a sane incoming X-Request-ID, or a new one),
    returns it in the response's X-Request-ID, logs everything the request
    causes under it, and writes one line when the request finishes.

    First in MIDDLEWARE, so its line covers what the others answer too. The
    query string never reaches the line: it may carry a ticket or a token.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        request.request_id = request_id_accept(request.headers.get(REQUEST_ID_HEADER))
        with request_id_bound(request.request_id):
            response = self.get_response(request)
            self._finished(request, response, started)
        return response

    def _finished(self, request, response, started):
        response.headers[REQUEST_ID_HEADER] = request.request_id
        path = escape_uri_path(request.path)  # control characters stay escaped in text lines
        fields = {
            "method": request.method,
            "path": path,
            "view": request_view_name(request),
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "user_id": _user_id(request),
            "client": client_address(request.META.get("REMOTE_ADDR"), request.headers.get("X-Forwarded-For")),
            "request_id": request.request_id,
        }
        level = logging.ERROR if response.status_code >= 500 else logging.INFO
        request_logger.log(level, "%s %s %s", request.method, path, response.status_code, extra=fields)

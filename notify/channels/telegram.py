import html
import logging
from functools import cache

import httpx
from django.conf import settings

from notify.channels.base import DeliveryError, NotDelivered, PermanentError, RecipientBlocked, TransientError
from notify.pacing import telegram_wait_turn

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = 4096  # characters of one sendMessage text, after escaping


@cache
def _client(timeout):
    # One pooled client for every worker thread (httpx.Client is thread-safe).
    return httpx.Client(timeout=timeout)


def telegram_text_chunks(title, message):
    """The message as HTML-safe texts of at most MESSAGE_LIMIT characters each.

    Splits prefer a line break, then a space, and never cut an escape like &amp;.
    """
    pieces = [f"<b>{html.escape(title)}</b>\n"] if title else []
    pieces += [html.escape(ch) for ch in message]
    chunks, current = [], ""
    for piece in pieces:
        if len(current) + len(piece) > MESSAGE_LIMIT:
            cut = max(current.rfind("\n"), current.rfind(" "))
            if cut <= 0:
                cut = len(current) - 1
            chunks.append(current[: cut + 1])
            current = current[cut + 1 :]
        current += piece
    if current.strip():
        chunks.append(current)
    return chunks


def _scrub(text):
    token = settings.TELEGRAM_BOT_TOKEN
    return text.replace(token, "<bot-token>") if token else text


def _post(chat_id, text):
    url = f"{settings.TELEGRAM_API_URL}/bot{settings.TELEGRAM_BOT_TOKEN}/sendMessage"
    try:
        response = _client(settings.TELEGRAM_TIMEOUT).post(
            url, json={"chat_id": chat_id, "text": text, "parse_mode": "HTML"}
        )
    except httpx.TimeoutException:
        raise TransientError("Telegram did not answer in time.") from None
    except httpx.HTTPError as exc:
        raise TransientError(_scrub(f"Telegram unreachable: {exc}")) from None

    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # Not the Bot API speaking (a proxy's page, say): only a status that
        # says "later" is worth another try.
        error = f"Telegram {status}, not a Bot API answer: {_scrub(response.text[:300])}"
        raise TransientError(error) if status == 429 or status >= 500 else PermanentError(error)
    description = _scrub(str(body.get("description") or response.reason_phrase))
    if status == 200 and body.get("ok") is True:
        result = body.get("result")
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if not isinstance(message_id, int):
            raise PermanentError(f"Telegram answered ok without a message id: {_scrub(response.text[:300])}")
        return str(message_id)
    if status == 429:
        retry_after = (body.get("parameters") or {}).get("retry_after")
        raise TransientError(f"Telegram 429: {description}", retry_after=retry_after)
    if status >= 500:
        raise TransientError(f"Telegram {status}: {description}")
    if status == 403 and "blocked" in description.lower():
        raise RecipientBlocked(f"Telegram 403: {description}")
    raise PermanentError(f"Telegram {status}: {description}")


def telegram_send(notification):
    chunks = telegram_text_chunks(notification.title, notification.message)
    if not settings.TELEGRAM_BOT_TOKEN:
        if not settings.DEBUG:
            raise PermanentError("Telegram is not configured: set TELEGRAM_BOT_TOKEN.")
        for chunk in chunks:
            logger.info("Telegram (console, no TELEGRAM_BOT_TOKEN) to %s:\n%s", notification.recipient, chunk)
        raise NotDelivered("Not delivered: no TELEGRAM_BOT_TOKEN is set, so the message was shown on the console.")
    # The parts an earlier attempt delivered are not sent again.
    message_ids = notification.provider_message_id.split(",") if notification.provider_message_id else []
    for chunk in chunks[len(message_ids) :]:
        telegram_wait_turn(notification.recipient)
        try:
            message_ids.append(_post(notification.recipient, chunk))
        except DeliveryError as exc:
            exc.delivered = ",".join(message_ids)
            raise
    return ",".join(message_ids)

import socket
import threading
from datetime import UTC, datetime

import pytest

from notify.channels import NotDelivered, Outbox, PermanentError, RecipientBlocked, TransientError
from notify.channels.telegram import MESSAGE_LIMIT, telegram_text_chunks
from notify.models import Notification
from notify.pacing import _LocalSlots, _RedisSlots
from tests.conftest import TELEGRAM_TEST_TOKEN
from tests.fakes import free_port


def channel_send(notification):
    with Outbox() as outbox:
        return outbox.send(notification)


def _email(**fields):
    return Notification(
        pk=fields.pop("pk", 7),
        created_at=datetime(2026, 5, 1, 12, 30, tzinfo=UTC),
        channel="email",
        recipient="ann@example.com",
        title=fields.pop("title", "Hello <Ann>"),
        message="Line one & <script>alert(1)</script>",
        html_message="<p>Hello &lt;Ann&gt;</p>",
        **fields,
    )


def _telegram(message="Your order shipped & is on its way <today>", recipient="123456789"):
    return Notification(channel="telegram", recipient=recipient, title="Order ORD-1", message=message)


def test_email_send_delivers_multipart_mail_to_a_real_smtp_server(smtp_sink):
    message_id = channel_send(_email())

    assert len(smtp_sink.messages) == 1
    received = smtp_sink.messages[0]
    assert received["to"] == ["ann@example.com"]
    mail = received["message"]
    assert mail["Subject"] == "Hello <Ann>"
    assert mail["Message-ID"] == message_id
    assert mail.get_body(("plain",)).get_content().strip() == "Line one & <script>alert(1)</script>"
    assert mail.get_body(("html",)).get_content().strip() == "<p>Hello &lt;Ann&gt;</p>"


def test_email_message_id_is_the_same_on_every_attempt(smtp_sink):
    channel_send(_email())
    channel_send(_email())
    channel_send(_email(pk=8))

    ids = [m["message"]["Message-ID"] for m in smtp_sink.messages]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0] == "<notification.7.20260501123000@localhost>"


def test_email_with_a_header_unsafe_title_fails_permanently(smtp_sink):
    with pytest.raises(PermanentError) as exc:
        channel_send(_email(title="Hello\nBcc: victim@example.com"))

    assert "header" in str(exc.value)
    assert smtp_sink.messages == []


def test_outbox_keeps_one_smtp_connection_and_reopens_it_after_an_error_or_a_drop(smtp_sink):
    with Outbox() as outbox:
        outbox.send(_email())
        outbox.send(_email())
        smtp_sink.reply_rcpt = "550 5.1.1 No such user"
        with pytest.raises(PermanentError):
            outbox.send(_email())
        smtp_sink.reply_rcpt = None
        outbox.send(_email())  # after an error: a new connection
        outbox._email.connection.connection.sock.shutdown(socket.SHUT_RDWR)  # dropped while idle
        outbox.send(_email())

    assert [m["connection"] for m in smtp_sink.messages] == [1, 1, 2, 3]


@pytest.mark.parametrize(
    "where, reply, error",
    [
        ("reply_rcpt", "451 4.7.1 Greylisted, try again later", TransientError),
        ("reply_data", "452 4.3.1 Insufficient system storage", TransientError),
        ("reply_rcpt", "550 5.1.1 No such user", PermanentError),
        ("reply_data", "554 5.7.1 Message rejected", PermanentError),
    ],
)
def test_email_send_classifies_smtp_replies(smtp_sink, where, reply, error):
    setattr(smtp_sink, where, reply)

    with pytest.raises(error) as exc:
        channel_send(_email())

    assert reply.split()[0] in str(exc.value)
    assert smtp_sink.messages == []


def test_email_send_connection_refused_is_transient(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()

    with pytest.raises(TransientError, match="SMTP connection failed"):
        channel_send(_email())


def test_email_send_times_out_on_a_silent_server(settings):
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never greets
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", listener.getsockname()[1]
    settings.EMAIL_TIMEOUT = 0.3
    try:
        with pytest.raises(TransientError, match="timed out"):
            channel_send(_email())
    finally:
        listener.close()


def test_telegram_send_posts_escaped_html_and_returns_the_message_id(telegram_api):
    message_id = channel_send(_telegram())

    assert message_id == "1"
    (request,) = telegram_api.requests
    assert request["path"] == f"/bot{TELEGRAM_TEST_TOKEN}/sendMessage"
    assert request["json"] == {
        "chat_id": "123456789",
        "text": "<b>Order ORD-1</b>\nYour order shipped &amp; is on its way &lt;today&gt;",
        "parse_mode": "HTML",
    }


@pytest.mark.parametrize(
    "answer, error",
    [
        ((429, 7), TransientError),
        ((500, "Internal Server Error"), TransientError),
        ((502, "Bad Gateway"), TransientError),
        ((400, "Bad Request: chat not found"), PermanentError),
        ((403, "Forbidden: bot was blocked by the user"), RecipientBlocked),
        ((403, "Forbidden: bot is not a member of the channel chat"), PermanentError),
        ("hang", TransientError),
        # Not understood: permanent, unless the status says "later".
        (("raw", 200, '{"ok": true}'), PermanentError),
        (("raw", 200, '{"ok": true, "result": {"chat": {"id": 1}}}'), PermanentError),
        (("raw", 200, '{"ok": true, "result": true}'), PermanentError),
        (("raw", 200, "<html>Welcome to our proxy</html>"), PermanentError),
        (("raw", 404, "<html>Not Found</html>"), PermanentError),
        (("raw", 200, "[1, 2]"), PermanentError),
        (("raw", 502, "<html>Bad Gateway</html>"), TransientError),
        (("raw", 429, "<html>Slow down</html>"), TransientError),
    ],
)
def test_telegram_send_classifies_bot_api_answers(telegram_api, answer, error):
    telegram_api.script.append(answer)

    with pytest.raises(error) as exc:
        channel_send(_telegram())

    assert type(exc.value) is error
    assert TELEGRAM_TEST_TOKEN not in str(exc.value)
    if answer[0] == "raw":
        assert answer[2][:20] in str(exc.value)  # the provider's own text is kept
    if answer[0] == 429:
        assert exc.value.retry_after == 7


def test_telegram_errors_never_show_the_bot_token(settings):
    settings.TELEGRAM_BOT_TOKEN = TELEGRAM_TEST_TOKEN
    settings.TELEGRAM_API_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens

    with pytest.raises(TransientError) as exc:
        channel_send(_telegram())

    assert TELEGRAM_TEST_TOKEN not in str(exc.value)
    assert "123456:" not in repr(exc.value.__cause__)  # the chain is cut too


def test_telegram_send_splits_long_messages(telegram_api):
    body = ("word & " * 1500).strip()  # 16,495 characters once escaped, with the title

    ids = channel_send(_telegram(message=body))

    texts = telegram_api.sent_texts()
    assert len(texts) == 5
    assert ids == "1,2,3,4,5"
    assert all(len(text) <= MESSAGE_LIMIT for text in texts)
    assert "".join(texts) == "<b>Order ORD-1</b>\n" + body.replace("&", "&amp;")


def test_telegram_chunks_never_cut_an_escape():
    chunks = telegram_text_chunks("", "&" * 5000)

    assert all(len(c) <= MESSAGE_LIMIT and len(c) % 5 == 0 for c in chunks)
    assert len(chunks) == 7  # 25,000 characters, 819 escapes a chunk
    assert "".join(chunks) == "&amp;" * 5000


def test_telegram_without_token_logs_in_debug_and_fails_otherwise(settings, caplog):
    settings.TELEGRAM_BOT_TOKEN = ""
    settings.DEBUG = True
    with caplog.at_level("INFO", logger="notify.channels.telegram"), pytest.raises(NotDelivered, match="console"):
        channel_send(_telegram())
    assert "Your order shipped" in caplog.text

    settings.DEBUG = False
    with pytest.raises(PermanentError, match="TELEGRAM_BOT_TOKEN"):
        channel_send(_telegram())


def test_telegram_paces_messages_to_one_chat(telegram_api, settings):
    settings.TELEGRAM_CHAT_INTERVAL_SECONDS = 0.3

    channel_send(_telegram(recipient="555"))
    channel_send(_telegram(recipient="555"))
    channel_send(_telegram(recipient="556"))

    first, second, other_chat = (r["at"] for r in telegram_api.requests)
    assert second - first >= 0.28
    assert other_chat - second < 0.25  # another chat does not wait for this one


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_pacing_slots_are_shared_by_concurrent_workers(backend, request):
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        workers = [_RedisSlots(url), _RedisSlots(url)]  # as two processes would hold them
        key = f"test:chat:{free_port()}"
    else:
        shared = _LocalSlots()
        workers, key = [shared, shared], "test:chat:1"
    waits = []
    lock = threading.Lock()

    def reserve(slots):
        wait = slots.reserve(key, 0.5)
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=reserve, args=(workers[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Four reservations a half second apart: the n-th waits about n/2 seconds.
    assert [round(w * 2) for w in sorted(waits)] == [0, 1, 2, 3]

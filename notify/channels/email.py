import smtplib

from django.conf import settings
from django.core.mail import BadHeaderError, EmailMultiAlternatives, get_connection

from notify.channels.base import PermanentError, TransientError


def _smtp_error(exc):
    """SMTP replies 4xx are temporary, 5xx permanent (RFC 5321)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(
            f"{rcpt}: {code} {msg.decode(errors='replace')}" for rcpt, (code, msg) in exc.recipients.items()
        )
        error = f"SMTP refused the recipient: {detail}"
        return TransientError(error) if all(400 <= c < 500 for c in codes) else PermanentError(error)
    if isinstance(exc, smtplib.SMTPResponseException):
        message = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        error = f"SMTP {exc.smtp_code}: {message}"
        return TransientError(error) if 400 <= exc.smtp_code < 500 else PermanentError(error)
    return TransientError(f"SMTP connection failed: {exc}")


class EmailSender:
    """Sends ledger rows over one SMTP connection, opened on first use and
    opened afresh after any error, so a batch pays for one handshake."""

    def __init__(self):
        self.connection = get_connection(timeout=settings.EMAIL_TIMEOUT)
        domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip("> ")
        self.domain = domain or "localhost"

    def message_id(self, notification):
        """The same on every attempt, so a receiver can tell a second copy."""
        return f"<notification.{notification.pk}.{notification.created_at:%Y%m%d%H%M%S}@{self.domain}>"

    def send(self, notification):
        message_id = self.message_id(notification)
        email = EmailMultiAlternatives(
            subject=notification.title,
            body=notification.message,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[notification.recipient],
            headers={"Message-ID": message_id},
            connection=self.connection,
        )
        if notification.html_message:
            email.attach_alternative(notification.html_message, "text/html")
        try:
            reused = self.connection.open() is False  # SMTP: False while already open
            try:
                email.send()  # leaves a connection it did not open itself open
            except smtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                self.close()  # the server dropped an idle connection: once more on a new one
                self.connection.open()
                email.send()
        except BadHeaderError as exc:
            raise PermanentError(f"Not a valid mail header: {exc}") from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            self.close()
            raise _smtp_error(exc) from exc
        return message_id

    def close(self):
        self.connection.close()

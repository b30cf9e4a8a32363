class DeliveryError(Exception):
    """A send that did not go through; the message is safe to store and show.

    `delivered`: the provider ids of the parts of a split message that did go
    out before it failed (comma-separated), so the next attempt sends only the rest.
    """

    def __init__(self, message, *, delivered=""):
        super().__init__(message)
        self.delivered = delivered


class TransientError(DeliveryError):
    """Worth retrying: the provider or the network may recover."""

    def __init__(self, message, *, retry_after=None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after  # seconds the provider asked us to wait, if it did


class PermanentError(DeliveryError):
    """Retrying cannot help: the recipient or the message is refused."""


class NotDelivered(DeliveryError):
    """The channel is not set up here (a developer's machine): the message was
    shown on the console instead, and the row ends `skipped` saying so."""


class RecipientBlocked(PermanentError):
    """The recipient has blocked us; stop writing to them."""

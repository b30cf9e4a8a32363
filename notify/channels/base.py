class DeliveryError(Exception):
    """A send that did not go through; the message is safe to store and show."""


class TransientError(DeliveryError):
    """Worth retrying: the provider or the network may recover."""

    def __init__(self, message, *, retry_after=None):
        super().__init__(message)
        self.retry_after = retry_after  # seconds the provider asked us to wait, if it did


class PermanentError(DeliveryError):
    """Retrying cannot help: the recipient or the message is refused."""


class RecipientBlocked(PermanentError):
    """The recipient has blocked us; stop writing to them."""

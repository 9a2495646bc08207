"""Errors of the bot's encrypted device."""


class CryptoError(RuntimeError):
    """The homeserver refused a key operation for a reason a retry will not fix."""

    def __init__(self, message: str, *, status: int | None = None, errcode: str | None = None):
        super().__init__(message)
        self.status = status
        self.errcode = errcode

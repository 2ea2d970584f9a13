"""One error taxonomy for all vendors.

The send path decides what to do from the *class* of an error alone:

* :class:`RetryableError` -- the request certainly did not take effect
  (connection refused, the server said it did not process it): send again.
* :class:`RateLimitedError` -- a retryable error with a back-off hint.
* :class:`PermanentError` -- sending the same request again gives the same
  answer (auth, signature, bad parameter, content too long, no balance).
* :class:`AmbiguousError` -- the request may have reached the vendor (read
  timeout, broken or garbled response after it went out). Never resend blindly.

Messages never include secrets: they are built from vendor codes, paths and
our own descriptions only.
"""

from __future__ import annotations


class SmsError(Exception):
    """Base of every error a vendor client raises."""

    retryable = False

    def __init__(self, message: str, *, vendor: str = "", code: str | None = None,
                 endpoint: str = "") -> None:
        self.vendor = vendor
        self.code = code
        self.endpoint = endpoint
        parts = [p for p in (vendor, endpoint) if p]
        prefix = f"[{' '.join(parts)}] " if parts else ""
        suffix = f" (code {code})" if code is not None else ""
        super().__init__(f"{prefix}{message}{suffix}")


class RetryableError(SmsError):
    """The request did not take effect; repeating it is safe."""

    retryable = True


class RateLimitedError(RetryableError):
    """The vendor refused because we went too fast."""

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class PermanentError(SmsError):
    """Repeating the request gives the same answer; a person must act."""


class AuthenticationError(PermanentError):
    """Credentials, signature, key or clock were refused."""


class LimitExceededError(PermanentError):
    """A documented vendor limit would be broken; raised before sending."""


class InsufficientBalanceError(PermanentError):
    """The account cannot pay for the request."""


class AmbiguousError(SmsError):
    """The request may have reached the vendor; the outcome is unknown."""


class VendorError(PermanentError):
    """A vendor code we have no mapping for; ``code`` keeps it verbatim."""


class ProtocolError(AmbiguousError):
    """The vendor answered something that makes no sense (garbled, wrong shape).

    It is ambiguous because the vendor did answer: the request reached it.
    """

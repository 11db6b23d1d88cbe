"""Every error qaudio_magic raises, as one hierarchy.

    QAudioError                     base; its str() is one line fit to show a user
    ├── InputError                  the user's input cannot be used; nothing was sent
    │   ├── SourceError             a SOURCE cannot be found, read or fetched
    │   ├── AudioDecodeError        a source holds no decodable audio
    │   ├── AudioTooLargeError      a source is over a size limit
    │   └── SchemaError             a typed question's schema cannot be used
    ├── ConfigError                 settings are missing or wrong
    │   └── MissingKeyError         no API key; raised before any request is sent
    ├── APIError                    the service answered with an error (status, code, request id)
    ├── TransportError              the service could not be reached, or the connection broke
    ├── CacheMissError              offline replay, and the response cache has no answer
    ├── AnswerMismatchError         a typed answer is not JSON matching its schema, even
    │                               after one repair request (the validation message)
    └── Interrupted                 the user pressed Ctrl-C; partial text is kept, history unchanged

In a magic, any ``QAudioError`` prints as one line (no traceback); in Python code it
propagates normally. Each error also says what a batch should do with it:
:attr:`QAudioError.ends_batch` is true for errors that would repeat for every remaining
item (no key, a spent quota), so a batch stops sending instead of failing 400 times. Messages never contain the API key: they pass through
:func:`qaudio_magic._secret.scrub` on the way in, and then through
:func:`qaudio_magic._format.printable` (no terminal control codes from a server's text).
"""

from __future__ import annotations

from ._format import printable
from ._secret import scrub

__all__ = [
    "APIError",
    "AnswerMismatchError",
    "AudioDecodeError",
    "AudioTooLargeError",
    "CacheMissError",
    "ConfigError",
    "InputError",
    "Interrupted",
    "MissingKeyError",
    "QAudioError",
    "SchemaError",
    "SourceError",
    "TransportError",
]


class QAudioError(Exception):
    """Base of every qaudio_magic error; ``str()`` is a single line for the user."""

    hint: str | None = None
    ends_batch = False  # would every other item of a batch fail the same way?

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = printable(scrub(" ".join(str(message).split())))
        super().__init__(message)
        if hint is not None:
            self.hint = printable(scrub(hint))

    def one_line(self) -> str:
        """The message plus its hint, as shown by the magic."""
        text = str(self)
        return f"{text} — {self.hint}" if self.hint else text


class InputError(QAudioError):
    """The question or its sources cannot be used; nothing was sent."""


class SourceError(InputError):
    """A SOURCE cannot be found, read or fetched."""


class AudioDecodeError(InputError):
    """A source holds no audio that can be decoded."""


class AudioTooLargeError(InputError):
    """A source is larger than a limit allows."""


class ConfigError(QAudioError):
    """A setting is missing or invalid (the same for every item of a batch)."""

    ends_batch = True


class MissingKeyError(ConfigError):
    """No API key is available for a route that needs one."""


class TransportError(QAudioError):
    """The service could not be reached, or the connection broke mid-answer.

    ``request_id`` is set when the answer had begun (its frames named one).
    """

    retryable = True
    request_id: str | None = None


# Codes about the account or the model: they would repeat for every item of a batch.
_ACCOUNT_CODES = frozenset(
    {
        "InvalidApiKey",
        "Arrearage",
        "AllocationQuota.FreeTierOnly",
        "Throttling.AllocationQuota",
        "AccessDenied",
        "Model.AccessDenied",
        "ModelNotFound",
    }
)
# Codes that never succeed on a retry, whatever their HTTP status says: the account codes
# plus those about one request's content.
_FINAL_CODES = _ACCOUNT_CODES | {"DataInspectionFailed", "InvalidParameter"}

_HINTS = {
    "InvalidApiKey": "set DASHSCOPE_API_KEY or run %qaudio key",
    "AllocationQuota.FreeTierOnly": (
        "the Qwen-Audio free quota is spent (it has no paid tier); "
        "try a Qwen-Omni model, e.g. -m qwen3-omni-flash"
    ),
    "Throttling.AllocationQuota": "the token quota is spent; try a Qwen-Omni model",
    "Arrearage": "the Alibaba Cloud account is overdue",
    "ModelNotFound": "see %qaudio models for known model names",
}


class APIError(QAudioError):
    """The service answered with an error.

    Carries what a user needs to report it: HTTP ``status``, the service's ``code``,
    its ``message`` and the ``request_id``.
    """

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        request_id: str | None = None,
        *,
        retry_after: float | None = None,
        service: str = "DashScope",
    ) -> None:
        self.status = status
        self.code = code or f"HTTP{status}"
        self.api_message = scrub(message)
        self.request_id = request_id
        self.retry_after = retry_after
        text = f"{service} error {status} {self.code}: {self.api_message}"
        if request_id:
            text += f" (request id {request_id})"
        super().__init__(text, hint=_HINTS.get(self.code))

    @property
    def retryable(self) -> bool:
        """Whether asking again may succeed: rate limits and server faults, not quota or keys."""
        if self.code in _FINAL_CODES or self.code.startswith("BadRequest"):
            return False
        return self.status == 429 or self.status >= 500

    @property
    def ends_batch(self) -> bool:  # type: ignore[override]
        """Whether the error is about the account or model, not this one request."""
        return self.code in _ACCOUNT_CODES


class CacheMissError(QAudioError):
    """Offline replay was asked for, and the cache holds no answer to this request."""


class Interrupted(QAudioError):
    """The user interrupted (Ctrl-C); the partial answer is kept, the conversation unchanged."""


class SchemaError(InputError):
    """A typed question's schema cannot be used (unknown field type, bad JSON Schema)."""


class AnswerMismatchError(QAudioError):
    """A typed answer is not JSON matching the schema, even after one repair request.

    ``raw`` is the last answer as the model sent it.
    """

    def __init__(self, message: str, *, raw: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.raw = raw

"""Exceptions raised by afs.continuous.

Every rejection of caller input is an :class:`InvalidFieldError`, a ``ValueError``
subclass that names the offending field and value, so callers that already catch
``ValueError`` keep working and callers that want precision can read ``.field``.
"""

from __future__ import annotations

import re
from typing import Any

_MAX_REPR = 80
# up to the last '@' of the URL: a password may hold an unencoded '/' or '@'
_URL_CREDENTIALS = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)\S*@")
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('[^']*'|[^&\s]*)")


def redact_secrets(text: str) -> str:
    """``text`` with every password in it masked: in a URL's authority, in a
    ``password=`` query parameter, or in a libpq ``key=value`` string.

    Database URLs come from secrets, and drivers quote them in their errors; a message,
    a status condition or an Event that echoes one must not carry the password to
    whoever can read it.
    """
    return _PASSWORD_PARAM.sub(r"\1***", _URL_CREDENTIALS.sub(r"\1***@", text))


_SECRET_QUERY = re.compile(
    r"(?i)^(password|passwd|pass|pwd|secret|token|access_token|api_key|apikey|key|sig|"
    r"signature|credential|credentials|x-amz-signature|x-amz-credential|"
    r"x-amz-security-token|x-goog-signature|x-goog-credential|sas|sv|se|sp|skoid|sktid)$"
)


def strip_credentials(url: str) -> str:
    """``url`` with nothing in it that grants access: the user name and password of its
    authority and every query parameter that carries a key, token or signature (S3,
    GCS and Azure presigned URLs) are dropped.

    A message keeps the scheme, host and path, which is what a reader needs to tell
    which place was meant; a user name is often a token in its own right, so it goes
    too (unlike :func:`redact_secrets`, which keeps it for a database's messages).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:  # not a URL, but it may still start like one's authority ("u:p@host/x")
        head, slash, tail = url.partition("/")
        return head.rpartition("@")[2] + slash + tail
    authority, slash, tail = rest.partition("/")
    after_colon = authority.rpartition(":")[2]
    password_with_slash = (
        ":" in authority and not after_colon.isdigit() and "@" in tail.split("?", 1)[0]
    )
    if "@" in authority or password_with_slash:
        # an unencoded '/' in a password moves the host after the first '/': cut at the
        # last '@' before the query, so no piece of the password is left
        head = rest.split("?", 1)[0]
        rest = rest[head.rindex("@") + 1 :]
        authority, slash, tail = rest.partition("/")
    path, question, query = tail.partition("?")
    if question:
        kept = [
            part for part in query.split("&")
            if part and not _SECRET_QUERY.match(part.split("=", 1)[0])
        ]  # fmt: skip
        query = "&".join(kept)
        question = "?" if kept else ""
    return f"{scheme}://{authority}{slash}{path}{question}{query}"


class ContinuousError(Exception):
    """Base class for errors specific to afs.continuous."""


def _shown(value: Any) -> str:
    """``repr``, bounded: an integer of thousands of digits cannot even be printed (Python
    refuses past 4,300), nor need it be."""
    if isinstance(value, int) and not isinstance(value, bool):
        digits = value.bit_length() * 0.30103
        if digits > _MAX_REPR:
            return f"an integer of about {digits:,.0f} digits"
    try:
        return repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__} too large to show"


class InvalidFieldError(ContinuousError, ValueError):
    """A value given for ``field`` breaks a rule; nothing was written."""

    def __init__(self, field: str, value: Any, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        shown = _shown(value)
        if len(shown) > _MAX_REPR:
            shown = f"{shown[:_MAX_REPR]}… ({len(shown)} characters)"
        # a name that is not a plain word ('id ', '', 'a"b') is quoted, or it cannot be seen
        named = field if re.fullmatch(r"[\w.\[\]-]+", field) else repr(field)[:_MAX_REPR]
        super().__init__(f"{named} {rule}, got {shown}")


class InvalidBatchError(ContinuousError, ValueError):
    """One item of a batch is invalid; the whole batch was rejected and nothing written."""

    def __init__(self, index: int, cause: InvalidFieldError, *, label: str = "record") -> None:
        self.index = index
        self.cause = cause
        super().__init__(f"{label} {index}: {cause}")


class StoreUnavailableError(ContinuousError):
    """The database could not be reached (within the store's retry window)."""


class StoreOpenError(ContinuousError):
    """The database named cannot be opened as one: a directory, a file that is not a
    database, a place that cannot be written. Not transient: retrying will not help."""


class SchemaVersionError(ContinuousError):
    """The database was written by a newer afs-continuous than this one."""


class SampleFormatError(ContinuousError, ValueError):
    """A line of an existing training-data file is not a sample in a known format."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {problem}")

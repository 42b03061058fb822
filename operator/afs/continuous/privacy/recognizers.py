"""The recognizers redaction runs: Presidio's pattern recognizers for structured personal
data, adjusted to work offline and on code, and ours for secrets.

Adjustments, and why:
- e-mail: Presidio checks the domain against the public suffix list through
  ``tldextract``, whose default fetches the list from the internet on first use (a
  timeout per process where there is none); ours reads the snapshot bundled with it.
- URL: Presidio also takes bare ``name.tld`` words, so ``setup.py`` (Paraguay), ``main.rs``
  (Serbia) or ``self.id`` in code became URLs; ours needs a scheme or ``www.``.
- phone numbers: Presidio runs ``phonenumbers`` over the whole text for each region (the
  costliest recognizer by far); a text with fewer than seven digits holds none, so ours
  returns at once.
Secrets are matched case-sensitively (Presidio's default flags ignore case), each with
the shape its issuer documents.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import regex
import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    CryptoRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UrlRecognizer,
    UsSsnRecognizer,
)

_CASE_SENSITIVE = regex.DOTALL | regex.MULTILINE
#: the public suffix list as bundled with tldextract: nothing fetched
_OFFLINE_SUFFIXES = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
_DIGIT = regex.compile(r"\d")
#: a year and a month first: a date, or a build or release number made from one
_DATED = regex.compile(r"(?:19|20)\d\d[-./](?:0?[1-9]|1[0-2])[-./]")
#: the fewest digits a phone number has (a local number without its area code)
_PHONE_MIN_DIGITS = 7


class OfflineEmailRecognizer(EmailRecognizer):
    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_SUFFIXES(pattern_text).fqdn != ""


class SchemeUrlRecognizer(UrlRecognizer):
    def __init__(self) -> None:
        super().__init__(
            patterns=[
                Pattern(
                    "Url with scheme",
                    r"(?i)\b(?:https?|ftps?|wss?)://[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]]",
                    0.6,
                ),
                Pattern("www Url", "(?i)\\bwww\\d{0,3}[.]" + UrlRecognizer.BASE_URL_REGEX, 0.5),
            ]
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        # a URL at the end of a sentence does not own its full stop
        return None


class DigitGatedPhoneRecognizer(PhoneRecognizer):
    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        if len(_DIGIT.findall(text, overlapped=False)) < _PHONE_MIN_DIGITS:
            return []
        found = super().analyze(text, entities, nlp_artifacts)
        return [result for result in found if _written_as_phone(text, result.start, result.end)]


def _written_as_phone(text: str, start: int, end: int) -> bool:
    """A number as people write a phone number: grouped (a space, dash, dot, brackets or
    a leading +) and standing alone. A bare run of digits is a timestamp or an order
    number far more often (``ts=1710498151``), and digits glued to an identifier are part
    of it (``INV-2024-004512``); one that starts with a year and a month is dated
    (``2025.10.2171``)."""
    number = text[start:end]
    if not any(c in number for c in " -.()+/") or _DATED.match(number):
        return False
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    glued_before = (
        before.isalnum()
        or before == "_"
        or (before == "-" and start > 1 and text[start - 2].isalnum())
    )
    return not glued_before and not (after.isalnum() or after == "_")


def _secret(entity: str, *patterns: tuple[str, str], score: float = 1.0) -> PatternRecognizer:
    return PatternRecognizer(
        supported_entity=entity,
        name=f"{entity.title().replace('_', '')}Recognizer",
        patterns=[Pattern(name, pattern, score) for name, pattern in patterns],
        global_regex_flags=_CASE_SENSITIVE,
    )


def _has_letters_and_digits(text: str) -> bool:
    return any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


class _MixedSecretRecognizer(PatternRecognizer):
    """A token shape that words can take too (``sk-learn-compatible``): a match counts
    only with letters of both cases and digits, as a random key has."""

    def validate_result(self, pattern_text: str) -> bool:
        body = pattern_text.rsplit("-", 1)[-1] if "-" in pattern_text else pattern_text
        return (
            any(c.isdigit() for c in pattern_text)
            and any(c.isupper() for c in pattern_text)
            and any(c.islower() for c in body)
        )


class _PasswordRecognizer(PatternRecognizer):
    """``password = "…"``, ``api_key: …``: the value only, and only when it looks like
    one (letters and digits, no call or attribute, which code has in that place)."""

    def validate_result(self, pattern_text: str) -> bool:
        return _has_letters_and_digits(pattern_text) and not any(c in pattern_text for c in "()[]")


class _JwtRecognizer(PatternRecognizer):
    """Three base64url parts whose first decodes to a JSON header naming ``alg``."""

    def validate_result(self, pattern_text: str) -> bool:
        header = pattern_text.split(".", 1)[0]
        try:
            decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
            return isinstance(json.loads(decoded), dict)
        except (binascii.Error, ValueError):
            return False


_KEY_WORDS = r"(?:password|passwd|pwd|secret|api[_-]?key|apikey|access[_-]?token|auth[_-]?token)"


def secret_recognizers() -> list[EntityRecognizer]:
    return [
        _secret("AWS_ACCESS_KEY", ("AWS key id", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
        _secret(
            "AWS_SECRET_KEY",
            (
                "labelled AWS secret",
                r"(?i:(?<=aws_?secret(?:_?access)?_?key[\"']?\s{0,4}[:=]\s{0,4}[\"']?))"
                r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])",
            ),
        ),
        _secret(
            "GITHUB_TOKEN",
            ("GitHub token", r"\bgh[pousr]_[A-Za-z0-9]{36,251}\b"),
            ("GitHub fine-grained token", r"\bgithub_pat_[A-Za-z0-9_]{22,251}\b"),
        ),
        _secret(
            "SLACK_TOKEN",
            ("Slack token", r"\bxox[abeposr]-(?:\d+-)*[A-Za-z0-9-]{10,250}\b"),
            ("Slack webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}"),
        ),
        _MixedSecretRecognizer(
            supported_entity="OPENAI_API_KEY",
            name="OpenAiApiKeyRecognizer",
            patterns=[
                Pattern(
                    "OpenAI-style key",
                    r"\bsk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?"
                    r"[A-Za-z0-9_-]{20,250}(?![A-Za-z0-9_-])",
                    1.0,
                )
            ],
            global_regex_flags=_CASE_SENSITIVE,
        ),
        _JwtRecognizer(
            supported_entity="JWT",
            name="JwtRecognizer",
            patterns=[
                Pattern(
                    "JSON Web Token",
                    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
                    1.0,
                )
            ],
            global_regex_flags=_CASE_SENSITIVE,
        ),
        _secret(
            "PRIVATE_KEY",
            (
                "PEM block",
                r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.{0,20000}?"
                r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----",
            ),
            (
                "PEM block cut short",
                r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
                r"(?:(?:\s|\\n|\\r)*[A-Za-z0-9+/=]{16,})+",
            ),
        ),
        _secret(
            "BEARER_TOKEN",
            ("bearer token", r"(?i:(?<=\bbearer\s{1,8}))[A-Za-z0-9._~+/-]{16,}=*"),
        ),
        _secret(
            "URL_PASSWORD",
            (
                "password in a URL",
                r"(?<=\b[a-z][a-z0-9+.-]{1,30}://[^\s:/@\"']{1,128}:)[^\s@/\"']{1,256}(?=@)",
            ),
        ),
        _PasswordRecognizer(
            supported_entity="PASSWORD",
            name="PasswordRecognizer",
            patterns=[
                Pattern(
                    "labelled secret",
                    rf"(?i:(?<=\b{_KEY_WORDS}[\"']?\s{{0,4}}[:=]\s{{0,4}}[\"']?))"
                    r"[^\s\"',;]{8,200}",
                    0.8,
                )
            ],
            global_regex_flags=_CASE_SENSITIVE,
        ),
    ]


#: what a text must hold for an entity type to be in it at all: only the types whose mark
#: a text holds are looked for (most prose has no digit, "@" or "://", and a text with
#: a digit has no "eyJ"). Each mark is implied by the type's patterns: every phone
#: number, card, IBAN, IP address, SSN and bitcoin address has a digit (an IPv6 address a
#: colon), every e-mail address an "@".
ENTITY_MARKS = {
    "EMAIL_ADDRESS": "@",
    "PHONE_NUMBER": r"\d",
    "CREDIT_CARD": r"\d",
    "IBAN_CODE": r"\d",
    "IP_ADDRESS": r"[\d:]",
    "US_SSN": r"\d",
    "URL": r"://|(?i:www\d{0,3}\.)",
    "CRYPTO": r"\d",
    "AWS_ACCESS_KEY": "AKIA|ASIA|ABIA|ACCA",
    "AWS_SECRET_KEY": r"(?i:aws_?secret)",
    "GITHUB_TOKEN": "gh[pousr]_|github_pat_",
    "SLACK_TOKEN": "xox|hooks\\.slack\\.com",
    "OPENAI_API_KEY": "sk-",
    "JWT": "eyJ",
    "PRIVATE_KEY": "PRIVATE KEY-----",
    "BEARER_TOKEN": r"(?i:bearer)",
    "URL_PASSWORD": "://",
    "PASSWORD": rf"(?i:{_KEY_WORDS})",
}


Marks = list[tuple[regex.Pattern[str], list[str]]]


def marks_of(entities: list[str]) -> Marks | None:
    """Each distinct mark of ``entities`` with the types it stands for; None when one of
    them has no mark (a named entity: only the language model can tell)."""
    if any(entity not in ENTITY_MARKS for entity in entities):
        return None
    grouped: dict[str, list[str]] = {}
    for entity in entities:
        grouped.setdefault(ENTITY_MARKS[entity], []).append(entity)
    return [(regex.compile(mark), types) for mark, types in sorted(grouped.items())]


def marked_entities(marks: Marks, text: str) -> list[str]:
    """The types whose mark ``text`` holds."""
    return [entity for mark, types in marks if mark.search(text) for entity in types]


def structured_recognizers() -> list[EntityRecognizer]:
    return [
        OfflineEmailRecognizer(),
        DigitGatedPhoneRecognizer(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        SchemeUrlRecognizer(),
        CryptoRecognizer(),
    ]

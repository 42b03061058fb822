"""Redaction with Microsoft Presidio: find personal data and secrets in a text, and
replace them (``<EMAIL_ADDRESS>``), hash them with a key, or drop what holds them.

The analyzer runs without a language model (Presidio's no-op NLP engine) unless a spaCy
pipeline is named; nothing is downloaded. A text seen before is not analysed again (an
LRU cache): a conversation's earlier messages come back with each of its turns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from afs.continuous.formats import Sample
from afs.continuous.privacy.settings import RedactionConfig, RedactionError

log = logging.getLogger(__name__)

#: distinct texts remembered with their redaction
CACHE_SIZE = 16_384


@dataclass
class RedactionReport:
    """What a redaction pass found: per entity type, the values replaced; the records
    (samples) in which anything was, and those left out for it (``drop``)."""

    fingerprint: str
    operator: str
    entities: dict[str, int] = field(default_factory=dict)
    records_redacted: int = 0
    records_dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "operator": self.operator,
            "entities": dict(sorted(self.entities.items())),
            "records_redacted": self.records_redacted,
            "records_dropped": self.records_dropped,
        }


def _presidio() -> tuple[Any, Any, Any]:
    try:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_anonymizer import AnonymizerEngine
    except ImportError as exc:  # an optional extra
        raise RedactionError(
            f"redaction needs Microsoft Presidio ({exc.name} is not installed): "
            "pip install 'afs-continuous[privacy]'"
        ) from None
    return AnalyzerEngine, RecognizerRegistry, AnonymizerEngine


def _nlp_engine(config: RedactionConfig) -> Any:
    if config.spacy_model is None:
        from presidio_analyzer.nlp_engine import NoOpNlpEngine

        return NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    import spacy.util
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    name = config.spacy_model
    if not (spacy.util.is_package(name) or Path(name).is_dir()):
        # Presidio would download it: never at run time
        raise RedactionError(
            f"spacy_model {name!r} is neither an installed spaCy package nor a pipeline "
            f"directory (install it with: python -m spacy download {name})"
        )
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": name}])
    engine.load()
    return engine


class Redactor:
    """Redacts texts, chat messages, samples and records as a :class:`RedactionConfig`
    says. Thread-safe; the counts accumulate until :meth:`take_report`."""

    def __init__(self, config: RedactionConfig | None = None) -> None:
        analyzer_engine, registry_type, anonymizer_engine = _presidio()
        from presidio_anonymizer.entities import OperatorConfig

        from afs.continuous.privacy.recognizers import (
            marked_entities,
            marks_of,
            secret_recognizers,
            structured_recognizers,
        )

        self._marked = marked_entities

        self.config = config if config is not None else RedactionConfig()
        self.entities = list(self.config.chosen_entities)
        self._marks = marks_of(self.entities)
        self.fingerprint = self.config.fingerprint()
        key = self.config.key()
        nlp = _nlp_engine(self.config)
        registry = registry_type(supported_languages=["en"])
        for recognizer in structured_recognizers() + secret_recognizers():
            registry.add_recognizer(recognizer)
        if self.config.spacy_model is not None:
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer

            registry.add_recognizer(SpacyRecognizer())
        self._analyzer = analyzer_engine(registry=registry, nlp_engine=nlp)
        self._anonymizer = anonymizer_engine()
        self._operators = {
            entity: OperatorConfig("custom", {"lambda": _keyed_hash(key, entity)})
            if key is not None
            else OperatorConfig("replace", {"new_value": f"<{entity}>"})
            for entity in self.entities
        }
        self._cache: OrderedDict[str, tuple[str, tuple[str, ...]]] = OrderedDict()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._redacted = self._dropped = 0

    # --- texts ---------------------------------------------------------------------

    def find(self, text: str) -> list[Any]:
        """Presidio's findings in ``text`` (``RecognizerResult``: type, start, end, score),
        looking only for the types whose mark the text holds."""
        entities = self.entities if self._marks is None else self._marked(self._marks, text)
        if not entities:
            return []
        return list(
            self._analyzer.analyze(
                text,
                language="en",
                entities=entities,
                score_threshold=self.config.score_threshold,
                allow_list=list(self.config.allow) or None,
            )
        )

    def redact_text(self, text: str) -> tuple[str, tuple[str, ...]]:
        """The text redacted, and the type of each value found (one per occurrence)."""
        if not text:
            return text, ()
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        results = self.find(text)
        if results:
            redacted = self._anonymizer.anonymize(
                text=text, analyzer_results=results, operators=self._operators
            )
            done = (redacted.text, tuple(item.entity_type for item in redacted.items))
        else:
            done = (text, ())
        with self._lock:
            self._cache[text] = done
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return done

    # --- messages, samples, records -------------------------------------------------

    def redact_message(self, message: dict[str, Any], found: list[str]) -> dict[str, Any]:
        """A chat message with its text redacted: content (a string or text parts), a
        refusal, and tool calls' arguments (JSON: each string in it, so it stays JSON)."""
        out = dict(message)
        content = message.get("content")
        if isinstance(content, str):
            out["content"] = self._text(content, found)
        elif isinstance(content, list):
            out["content"] = [
                part | {"text": self._text(part["text"], found)}
                if isinstance(part, dict) and isinstance(part.get("text"), str)
                else part
                for part in content
            ]
        if isinstance(message.get("refusal"), str):
            out["refusal"] = self._text(message["refusal"], found)
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            out["tool_calls"] = [self._call(call, found) for call in calls]
        return out

    def redact_messages(
        self, messages: list[dict[str, Any]] | None, found: list[str]
    ) -> list[dict[str, Any]] | None:
        if messages is None:
            return None
        return [self.redact_message(m, found) if isinstance(m, dict) else m for m in messages]

    def redact_sample(self, sample: Sample) -> Sample | None:
        """A training sample (:class:`~afs.continuous.formats.Sample`) redacted; None when
        something was found and the operator is ``drop``."""
        found: list[str] = []
        derived: list[str] = []  # texts the messages also hold: counted once, there
        redacted = replace(
            sample,
            query=self._text(sample.query, found if sample.messages is None else derived),
            response=self._text(
                sample.response, found if sample.response_message is None else derived
            ),
            messages=self.redact_messages(sample.messages, found),
            response_message=None
            if sample.response_message is None
            else self.redact_message(sample.response_message, found),
        )
        return self.settle(redacted, found)

    def redact_record(self, record: Any) -> None:
        """Redact a record being logged, in place (a ``prepare`` step before its checks):
        its texts, conversation, response message and feedback text; what is derived from
        them (the conversation's hash, the response's text) is derived again."""
        from afs.continuous.record_checks import take_conversation, take_response_message

        found: list[str] = []
        record.query = self._text(record.query, found)
        record.feedback_text = self._text(record.feedback_text, found)
        if record.response_message is not None:
            record.response_message = self.redact_message(record.response_message, found)
            take_response_message(record)
        else:
            record.response = self._text(record.response, found)
        if record.messages is not None:
            record.messages = self.redact_messages(record.messages, found)
            record.conversation_hash = None
            take_conversation(record)
        self.settle(record, found)

    def _text(self, text: Any, found: list[str]) -> Any:
        if not isinstance(text, str):
            return text
        redacted, types = self.redact_text(text)
        found.extend(types)
        return redacted

    def _call(self, call: Any, found: list[str]) -> Any:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
            return call
        arguments = function["arguments"]
        try:
            parsed = json.loads(arguments)
        except (ValueError, RecursionError):
            redacted = self._text(arguments, found)
        else:
            redacted = json.dumps(_map_strings(parsed, lambda s: self._text(s, found)))
            if redacted == json.dumps(parsed):
                redacted = arguments  # nothing found: the arguments byte for byte
        return call | {"function": function | {"arguments": redacted}}

    def settle(self, item: Any, found: list[str]) -> Any | None:
        """Count what was found in ``item``; None when the operator drops it."""
        with self._lock:
            self._counts.update(found)
            if found:
                self._redacted += 1
                if self.config.operator == "drop":
                    self._dropped += 1
                    return None
        return item

    def take_report(self) -> RedactionReport:
        """The counts since the last report (or since the start), then start again."""
        with self._lock:
            report = RedactionReport(
                fingerprint=self.fingerprint,
                operator=self.config.operator,
                entities=dict(self._counts),
                records_redacted=self._redacted,
                records_dropped=self._dropped,
            )
            self._counts.clear()
            self._redacted = self._dropped = 0
        return report


def _keyed_hash(key: bytes, entity: str) -> Callable[[str], str]:
    def token(value: str) -> str:
        digest = hmac.new(key, f"{entity}\x00{value}".encode(), hashlib.sha256).hexdigest()
        return f"<{entity}_{digest[:10]}>"

    return token


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_map_strings(item, change) for item in value]
    if isinstance(value, dict):
        return {key: _map_strings(item, change) for key, item in value.items()}
    return value

"""What the redactor does with texts, messages and samples, operator by operator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from afs.continuous.formats import Sample
from afs.continuous.privacy import DEFAULT_ENTITIES, RedactionConfig, RedactionError, Redactor
from afs.continuous.privacy.recognizers import marks_of

EMAIL = "anna.smith@example.com"
CARD = "4111 1111 1111 1111"


def test_replace_writes_the_entity_type(redactor: Redactor) -> None:
    text, found = redactor.redact_text(f"write to {EMAIL} or pay with {CARD}.")
    assert text == "write to <EMAIL_ADDRESS> or pay with <CREDIT_CARD>."
    assert sorted(found) == ["CREDIT_CARD", "EMAIL_ADDRESS"]


def test_a_text_without_personal_data_is_returned_as_it_was(redactor: Redactor) -> None:
    text = "LDA #$20 loads the accumulator; see section 2.4.1 of the manual."
    assert redactor.redact_text(text) == (text, ())


def test_the_keyed_hash_gives_one_token_per_value(hashing: Redactor) -> None:
    first, _ = hashing.redact_text(f"mail {EMAIL}")
    second, _ = hashing.redact_text(f"I said {EMAIL}, not bob@example.com")
    token = re.search(r"<EMAIL_ADDRESS_[0-9a-f]{10}>", first)
    assert token is not None and token.group() in second
    assert second.count("<EMAIL_ADDRESS_") == 2 and EMAIL not in second


def test_another_key_gives_other_tokens(hashing: Redactor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFS_REDACTION_KEY", "another-key-of-enough-length")
    other = Redactor(RedactionConfig(operator="hash"))
    assert hashing.redact_text(EMAIL)[0] != other.redact_text(EMAIL)[0]
    assert hashing.fingerprint != other.fingerprint


@pytest.mark.parametrize(("value", "why"), [(None, "not set"), ("short", "too short")])
def test_the_hash_operator_needs_a_key(
    monkeypatch: pytest.MonkeyPatch, value: str | None, why: str
) -> None:
    if value is None:
        monkeypatch.delenv("AFS_REDACTION_KEY", raising=False)
    else:
        monkeypatch.setenv("AFS_REDACTION_KEY", value)
    with pytest.raises(RedactionError, match=f"AFS_REDACTION_KEY.*{why}"):
        Redactor(RedactionConfig(operator="hash"))


def test_drop_leaves_out_a_sample_with_a_finding_and_counts_it() -> None:
    dropping = Redactor(RedactionConfig(operator="drop"))
    assert dropping.redact_sample(Sample("how do I reset my password?", "in settings")) is not None
    assert dropping.redact_sample(Sample(f"mail {EMAIL}", "ok")) is None
    report = dropping.take_report()
    assert (report.records_dropped, report.records_redacted) == (1, 1)
    assert report.entities == {"EMAIL_ADDRESS": 1}


def test_only_the_entities_asked_for_are_redacted() -> None:
    emails_only = Redactor(RedactionConfig(entities=("EMAIL_ADDRESS",)))
    text, _ = emails_only.redact_text(f"{EMAIL} {CARD}")
    assert text == f"<EMAIL_ADDRESS> {CARD}"


def test_allowed_values_stay(redactor: Redactor) -> None:
    allowing = Redactor(RedactionConfig(allow=("support@example.com",)))
    text, _ = allowing.redact_text(f"write to support@example.com, not {EMAIL}")
    assert text == "write to support@example.com, not <EMAIL_ADDRESS>"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"entities": ("EMAIL", "PHONE_NUMBER")}, "unknown entity type EMAIL"),
        ({"entities": ()}, "names no entity type"),
        ({"operator": "mask"}, "operator"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_configuration_is_refused_naming_the_field(
    config: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RedactionConfig(**config)  # type: ignore[arg-type]


def test_messages_keep_their_shape_and_tool_arguments_stay_json(redactor: Redactor) -> None:
    message = {
        "role": "assistant",
        "content": [{"type": "text", "text": f"sending to {EMAIL}"}],
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "send", "arguments": json.dumps({"to": EMAIL, "n": 2})},
            }
        ],
    }
    found: list[str] = []
    redacted = redactor.redact_message(message, found)
    assert redacted["content"] == [{"type": "text", "text": "sending to <EMAIL_ADDRESS>"}]
    arguments = json.loads(redacted["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"to": "<EMAIL_ADDRESS>", "n": 2}
    assert found == ["EMAIL_ADDRESS", "EMAIL_ADDRESS"]
    assert message["content"][0]["text"] == f"sending to {EMAIL}"  # type: ignore[index]


def test_a_refusal_is_redacted(redactor: Redactor) -> None:
    redacted = redactor.redact_message(
        {"role": "assistant", "content": None, "refusal": f"I won't email {EMAIL}."}, []
    )
    assert redacted["refusal"] == "I won't email <EMAIL_ADDRESS>."


def test_a_conversation_counts_each_value_once() -> None:
    counting = Redactor()
    sample = Sample(
        f"mail {EMAIL}",
        "done",
        messages=[{"role": "user", "content": f"mail {EMAIL}"}],
    )
    redacted = counting.redact_sample(sample)
    assert redacted is not None and redacted.messages == [
        {"role": "user", "content": "mail <EMAIL_ADDRESS>"}
    ]
    assert counting.take_report().entities == {"EMAIL_ADDRESS": 1}


def test_the_fingerprint_changes_with_what_decides_the_output() -> None:
    base = RedactionConfig().fingerprint()
    assert RedactionConfig().fingerprint() == base
    assert RedactionConfig(entities=("EMAIL_ADDRESS",)).fingerprint() != base
    assert RedactionConfig(score_threshold=0.5).fingerprint() != base


def test_every_pattern_type_has_a_mark_and_named_entities_have_none() -> None:
    """A text without any mark of the chosen types is not analysed: only possible when
    each type has one (the corpus tests prove the marks miss nothing)."""
    assert marks_of(list(DEFAULT_ENTITIES)) is not None
    assert marks_of(["EMAIL_ADDRESS", "PERSON"]) is None


def test_a_spacy_model_that_is_not_installed_is_never_downloaded() -> None:
    with pytest.raises(RedactionError, match="neither an installed spaCy package"):
        Redactor(RedactionConfig(spacy_model="xx_not_a_model_sm"))


def test_person_names_come_from_a_spacy_pipeline_when_one_is_given(tmp_path: Path) -> None:
    """A real spaCy pipeline, built here (an entity ruler: no model can be downloaded),
    loaded from its directory as an installed one would be."""
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": [{"LOWER": "ada"}, {"LOWER": "lovelace"}]}])
    nlp.to_disk(tmp_path / "pipeline")
    named = Redactor(RedactionConfig(spacy_model=str(tmp_path / "pipeline")))
    text, found = named.redact_text(f"Ada Lovelace wrote to {EMAIL}.")
    assert text == "<PERSON> wrote to <EMAIL_ADDRESS>."
    assert sorted(found) == ["EMAIL_ADDRESS", "PERSON"]

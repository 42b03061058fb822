"""Sample formats written by the generator read back as the same exchange."""

from __future__ import annotations

import pytest

from afs.continuous.formats import FORMAT_TYPES, Sample, format_sample, parse_sample


@pytest.mark.parametrize("format_type", FORMAT_TYPES)
def test_every_format_round_trips(format_type: str) -> None:
    sample = Sample("What is XCE?", "It swaps carry and emulation flags.", quality_score=0.8)
    parsed = parse_sample(format_sample(format_type, sample))
    assert (parsed.query, parsed.response) == (sample.query, sample.response)


def test_alpaca_input_is_joined_to_the_instruction() -> None:
    parsed = parse_sample({"instruction": "Translate", "input": "LDA #$00", "output": "load 0"})
    assert parsed.query == "Translate\n\nLDA #$00"


def test_chat_uses_first_user_turn_and_the_reply_after_it() -> None:
    parsed = parse_sample(
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "assistant", "content": "greeting"},
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "A"},
            ],
            "metadata": {"quality_score": 0.7, "user_feedback": True, "model": "m"},
        }
    )
    assert (parsed.query, parsed.response, parsed.quality_score) == ("Q", "A", 0.7)
    assert parsed.user_feedback is None and parsed.model == "m"


def test_unknown_format_name_is_refused() -> None:
    with pytest.raises(ValueError, match="format_type"):
        format_sample("parquet", Sample("q", "r"))

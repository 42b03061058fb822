"""The labelled corpus: every planted value gone (recall per type), look-alikes intact."""

from __future__ import annotations

from collections import Counter

import pytest

from afs.continuous.privacy import DEFAULT_ENTITIES, Redactor
from tests.privacy_corpus import LOOKALIKES, VALUES, lookalikes, planted

RECALL_TARGET = 0.99
INTACT_TARGET = 0.98


def test_the_corpus_plants_every_default_entity_type() -> None:
    assert set(VALUES) == set(DEFAULT_ENTITIES)


@pytest.fixture(scope="module")
def recall(redactor: Redactor) -> dict[str, float]:
    total, caught = Counter[str](), Counter[str]()
    for item in planted(per_type=60):
        total[item.entity] += 1
        caught[item.entity] += item.value not in redactor.redact_text(item.text)[0]
    return {entity: caught[entity] / total[entity] for entity in total}


@pytest.mark.parametrize("entity", DEFAULT_ENTITIES)
def test_planted_values_of_each_type_are_redacted(recall: dict[str, float], entity: str) -> None:
    assert recall[entity] >= RECALL_TARGET


@pytest.fixture(scope="module")
def intact(redactor: Redactor) -> dict[str, float]:
    total, kept = Counter[str](), Counter[str]()
    for kind, text in lookalikes(per_kind=60):
        total[kind] += 1
        kept[kind] += redactor.redact_text(text)[0] == text
    return {kind: kept[kind] / total[kind] for kind in total}


@pytest.mark.parametrize("kind", sorted(LOOKALIKES))
def test_lookalikes_are_left_intact(intact: dict[str, float], kind: str) -> None:
    assert intact[kind] >= INTACT_TARGET

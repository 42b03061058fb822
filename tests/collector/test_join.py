"""Pairing request and response halves: either order, duplicates, expiry, bounds."""

from __future__ import annotations

import pytest

from afs.continuous.collector.join import Half, JoinBuffer, JoinBufferFullError, Pair


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


REQUEST = Half("request", {"instances": ["q"]}, None, {})
RESPONSE = Half("response", {"predictions": ["a"]}, None, {})


@pytest.mark.parametrize(("first", "second"), [(REQUEST, RESPONSE), (RESPONSE, REQUEST)])
def test_halves_pair_in_either_order(first: Half, second: Half) -> None:
    buffer = JoinBuffer()
    assert buffer.offer("e1", first) == "waiting"
    assert buffer.offer("e1", second) == Pair(REQUEST, RESPONSE)
    assert len(buffer) == 0


def test_a_repeated_half_is_a_duplicate_before_and_after_pairing() -> None:
    buffer = JoinBuffer()
    buffer.offer("e1", REQUEST)
    assert buffer.offer("e1", REQUEST) == "duplicate"
    buffer.offer("e1", RESPONSE)
    assert buffer.offer("e1", RESPONSE) == "duplicate"
    assert buffer.duplicates == 2


def test_a_half_never_completed_expires_and_is_counted() -> None:
    ticks = Ticks()
    buffer = JoinBuffer(ttl_s=10, clock=ticks)
    buffer.offer("e1", REQUEST)
    ticks.now = 10.5
    assert buffer.offer("e2", REQUEST) == "waiting"
    assert buffer.expired == 1
    assert buffer.offer("e1", RESPONSE) == "waiting"  # its request is gone: not paired


def test_a_full_buffer_refuses_instead_of_growing() -> None:
    buffer = JoinBuffer(max_pending=2)
    buffer.offer("e1", REQUEST)
    buffer.offer("e2", REQUEST)
    with pytest.raises(JoinBufferFullError, match="2 events are waiting"):
        buffer.offer("e3", REQUEST)
    assert buffer.offer("e1", RESPONSE) == Pair(REQUEST, RESPONSE)  # completing still works


def test_a_forgotten_pair_can_be_offered_again() -> None:
    buffer = JoinBuffer()
    buffer.offer("e1", REQUEST)
    buffer.offer("e1", RESPONSE)
    buffer.forget("e1")
    buffer.offer("e1", REQUEST)
    assert buffer.offer("e1", RESPONSE) == Pair(REQUEST, RESPONSE)


@pytest.mark.parametrize(("max_pending", "ttl_s"), [(0, 1.0), (1, 0.0)])
def test_bounds_are_checked(max_pending: int, ttl_s: float) -> None:
    with pytest.raises(ValueError, match="max_pending"):
        JoinBuffer(max_pending=max_pending, ttl_s=ttl_s)

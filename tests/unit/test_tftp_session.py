"""The sans-IO read session: options, OACK, windows, retransmission, wrap and the final ACK."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pxelab.tftp.packet import (
    Ack,
    Data,
    ErrorCode,
    ErrorPacket,
    OptionAck,
    Packet,
    ReadRequest,
    WriteRequest,
    parse,
)
from pxelab.tftp.session import (
    Ending,
    MemorySource,
    Outcome,
    ReadSession,
    SessionConfig,
    Step,
    check_request,
    negotiate,
    to_netascii,
)

CONFIG = SessionConfig(timeout=1.0, retries=2)
T = TypeVar("T")


def make(
    data: bytes, options: Mapping[str, str] | None = None, config: SessionConfig = CONFIG
) -> ReadSession:
    return ReadSession(MemorySource(data), options or {}, config)


def sent(step: Step) -> list[Packet]:
    return [parse(datagram) for datagram in step.send]


# --- option negotiation -------------------------------------------------------------------

SIZE = 1000


@pytest.mark.parametrize(
    ("options", "oack", "blksize", "windowsize", "timeout"),
    [
        ({}, {}, 512, 1, 1.0),
        ({"blksize": "1468"}, {"blksize": "1468"}, 1468, 1, 1.0),
        ({"blksize": "8"}, {"blksize": "8"}, 8, 1, 1.0),
        ({"blksize": "65464"}, {"blksize": "65464"}, 65464, 1, 1.0),
        ({"blksize": "100000"}, {"blksize": "65464"}, 65464, 1, 1.0),
        ({"blksize": "7"}, {}, 512, 1, 1.0),
        ({"blksize": "abc"}, {}, 512, 1, 1.0),
        ({"blksize": "-1"}, {}, 512, 1, 1.0),
        ({"blksize": " 1468"}, {}, 512, 1, 1.0),
        ({"blksize": "9" * 50}, {}, 512, 1, 1.0),
        ({"tsize": "0"}, {"tsize": str(SIZE)}, 512, 1, 1.0),
        ({"tsize": ""}, {"tsize": str(SIZE)}, 512, 1, 1.0),
        ({"timeout": "5"}, {"timeout": "5"}, 512, 1, 5.0),
        ({"timeout": "255"}, {"timeout": "255"}, 512, 1, 255.0),
        ({"timeout": "0"}, {}, 512, 1, 1.0),
        ({"timeout": "256"}, {}, 512, 1, 1.0),
        ({"windowsize": "4"}, {"windowsize": "4"}, 512, 4, 1.0),
        ({"windowsize": "64"}, {"windowsize": "64"}, 512, 64, 1.0),
        ({"windowsize": "65535"}, {"windowsize": "64"}, 512, 64, 1.0),
        ({"windowsize": "0"}, {}, 512, 1, 1.0),
        ({"multicast": ""}, {}, 512, 1, 1.0),
        ({"utimeout": "1000"}, {}, 512, 1, 1.0),
        (
            {"tsize": "0", "blksize": "1428", "x": "y", "windowsize": "16"},
            {"tsize": str(SIZE), "blksize": "1428", "windowsize": "16"},
            1428,
            16,
            1.0,
        ),
    ],
)
def test_negotiate(
    options: dict[str, str], oack: dict[str, str], blksize: int, windowsize: int, timeout: float
) -> None:
    negotiated = negotiate(options, SIZE, SessionConfig())
    assert negotiated.oack == oack
    assert list(negotiated.oack) == list(oack)  # request order
    assert (negotiated.blksize, negotiated.windowsize, negotiated.timeout) == (
        blksize,
        windowsize,
        timeout,
    )


def test_negotiate_respects_server_caps() -> None:
    config = SessionConfig(max_blksize=1468, max_windowsize=8)
    negotiated = negotiate({"blksize": "9000", "windowsize": "32"}, SIZE, config)
    assert negotiated.oack == {"blksize": "1468", "windowsize": "8"}
    assert negotiate({"blksize": "1024"}, SIZE, config).blksize == 1024


@given(
    st.dictionaries(st.sampled_from(["blksize", "tsize", "timeout", "windowsize", "x"]), st.text())
)
def test_negotiate_never_grants_out_of_range(options: dict[str, str]) -> None:
    negotiated = negotiate(options, SIZE, SessionConfig())
    assert 8 <= negotiated.blksize <= 65464
    assert 1 <= negotiated.windowsize <= 64
    assert 1 <= negotiated.timeout <= 255
    assert set(negotiated.oack) <= set(options)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"max_blksize": 7}, "max_blksize"),
        ({"max_blksize": 65465}, "max_blksize"),
        ({"max_windowsize": 0}, "max_windowsize"),
        ({"backoff": 0.5}, "backoff"),
        ({"max_delay": 0}, "max_delay"),
        ({"idle_limit": 0}, "idle_limit"),
    ],
)
def test_config_is_validated(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SessionConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "refused"), [("octet", False), ("netascii", False), ("mail", True), ("x", True)]
)
def test_check_request_modes(mode: str, refused: bool) -> None:
    error = check_request(ReadRequest("f", mode))
    assert (error is not None) == refused
    if error is not None:
        assert error.code == ErrorCode.ILLEGAL_OPERATION


def test_netascii_conversion() -> None:
    assert to_netascii(b"a\nb\rc\r\n") == b"a\r\nb\r\0c\r\0\r\n"
    assert to_netascii(b"") == b""


# --- the transfer -------------------------------------------------------------------------


def test_without_options_data_starts_at_once() -> None:
    session = make(b"x" * 600)
    step = session.start(10.0)
    assert sent(step) == [Data(1, b"x" * 512)]
    assert step.deadline == 11.0
    assert step.outcome is None
    step = session.receive(Ack(1), 10.5)
    assert sent(step) == [Data(2, b"x" * 88)]
    assert step.deadline == 11.5
    step = session.receive(Ack(2), 10.6)
    assert step.send == ()
    assert step.deadline is None
    assert step.outcome is not None
    assert step.outcome.ending is Ending.COMPLETED
    assert step.outcome.bytes_acked == 600
    assert session.outcome == step.outcome


def test_start_twice_is_a_bug() -> None:
    session = make(b"")
    session.start(0.0)
    with pytest.raises(RuntimeError):
        session.start(0.0)


def test_oack_then_ack_zero_then_data() -> None:
    session = make(b"y" * 20, {"blksize": "8", "tsize": "0"})
    step = session.start(0.0)
    assert sent(step) == [OptionAck({"blksize": "8", "tsize": "20"})]
    assert step.deadline == 1.0
    # A stray ACK other than 0 does not start the data.
    assert session.receive(Ack(1), 0.1) == Step(deadline=1.0)
    step = session.receive(Ack(0), 0.2)
    assert sent(step) == [Data(1, b"y" * 8)]
    # A duplicate ACK 0 is ignored.
    assert session.receive(Ack(0), 0.3).send == ()


def test_error_8_after_oack_is_a_normal_end() -> None:
    session = make(b"z" * 1000, {"tsize": "0"})
    assert sent(session.start(0.0)) == [OptionAck({"tsize": "1000"})]
    error = ErrorPacket(ErrorCode.OPTION_NEGOTIATION, "tsize only")
    step = session.receive(error, 0.1)
    assert step.send == ()
    assert step.deadline is None
    assert step.outcome is not None
    assert step.outcome.ending is Ending.ABORTED_AFTER_OACK
    assert step.outcome.error == error
    assert step.outcome.bytes_acked == 0
    # Nothing happens after the end.
    assert session.expire(5.0) == Step()
    assert session.receive(Ack(0), 5.0) == Step()


def test_error_during_transfer() -> None:
    session = make(b"a" * 2000)
    session.start(0.0)
    session.receive(Ack(1), 0.1)
    step = session.receive(ErrorPacket(0, "disk full"), 0.2)
    assert step.outcome is not None
    assert step.outcome.ending is Ending.CLIENT_ERROR
    assert step.outcome.bytes_acked == 512


@pytest.mark.parametrize(
    "packet",
    [Data(1, b""), ReadRequest("f", "octet"), WriteRequest("f", "octet"), OptionAck({})],
)
def test_illegal_packets_get_error_4(packet: Packet) -> None:
    session = make(b"a" * 2000)
    session.start(0.0)
    step = session.receive(packet, 0.1)
    [error] = sent(step)
    assert isinstance(error, ErrorPacket)
    assert error.code == ErrorCode.ILLEGAL_OPERATION
    assert step.outcome is not None
    assert step.outcome.ending is Ending.ILLEGAL_OPERATION


def test_retransmit_on_timeout_then_give_up() -> None:
    session = make(b"q" * 700)  # retries=2, backoff 2
    first = session.start(0.0)
    assert session.expire(0.5) == Step(deadline=1.0)  # early timer: nothing to do
    again = session.expire(1.0)
    assert again.send == first.send
    assert again.deadline == 3.0  # waits twice as long
    assert session.expire(2.9) == Step(deadline=3.0)
    third = session.expire(3.0)
    assert third.send == first.send
    assert third.deadline == 7.0
    step = session.expire(7.0)
    assert step.send == ()
    assert step.outcome is not None
    assert step.outcome.ending is Ending.TIMED_OUT


@pytest.mark.parametrize(
    ("config", "delays"),
    [
        (SessionConfig(timeout=1.0, retries=6), [1, 2, 4, 8, 8, 8, 8]),
        (SessionConfig(timeout=1.0, retries=3, backoff=1.0), [1, 1, 1, 1]),
        (SessionConfig(timeout=0.5, retries=4, backoff=3.0, max_delay=2.0), [0.5, 1.5, 2, 2, 2]),
    ],
)
def test_backoff_delays(config: SessionConfig, delays: list[float]) -> None:
    session = make(b"q" * 700, config=config)
    step = session.start(0.0)
    now, seen = 0.0, []
    while step.outcome is None:
        assert step.deadline is not None
        seen.append(step.deadline - now)
        now = step.deadline
        step = session.expire(now)
    assert seen == pytest.approx(delays)
    assert step.outcome.ending is Ending.TIMED_OUT


@pytest.mark.parametrize("timeout", ["1", "20"])
def test_a_negotiated_timeout_is_kept_without_backoff(timeout: str) -> None:
    session = make(b"q" * 700, {"timeout": timeout}, SessionConfig(retries=3))
    session.start(0.0)
    step = session.receive(Ack(0), 0.0)
    seconds = float(timeout)
    for n in range(1, 4):
        assert step.deadline == n * seconds
        step = session.expire(n * seconds)
    assert step.deadline is not None
    step = session.expire(step.deadline)
    assert step.outcome is not None
    assert step.outcome.ending is Ending.TIMED_OUT


def test_only_old_acks_end_the_session_as_idle() -> None:
    config = SessionConfig(timeout=1.0, retries=1000, backoff=1.0, idle_limit=5.0)
    session = make(b"q" * 2000, config=config)
    step = session.start(0.0)
    now = 0.0
    while step.outcome is None:
        assert session.receive(Ack(0), now).send == ()  # repeats of an old ACK change nothing
        assert step.deadline is not None
        now = step.deadline
        step = session.expire(now)
    assert now == 5.0
    assert step.outcome.ending is Ending.IDLE


def test_progress_resets_the_idle_clock() -> None:
    config = SessionConfig(timeout=1.0, retries=1000, backoff=1.0, idle_limit=5.0)
    session = make(b"q" * 4000, config=config)
    session.start(0.0)
    session.expire(1.0)
    session.expire(2.0)
    step = session.receive(Ack(1), 4.5)
    assert step.deadline == 5.5
    for now in (5.5, 6.5, 7.5, 8.5):
        assert session.expire(now).outcome is None
    assert session.expire(9.5).outcome == session.outcome
    assert session.outcome is not None
    assert session.outcome.ending is Ending.IDLE


def test_oack_is_retransmitted() -> None:
    session = make(b"q" * 700, {"tsize": "0"})
    first = session.start(0.0)
    assert session.expire(1.0).send == first.send


def test_negotiated_timeout_sets_the_deadlines() -> None:
    session = make(b"q" * 700, {"timeout": "3"})
    assert session.start(0.0).deadline == 3.0
    assert session.receive(Ack(0), 1.0).deadline == 4.0


def test_progress_resets_the_retry_count_and_the_backoff() -> None:
    session = make(b"q" * 2000)  # retries=2, four blocks
    session.start(0.0)
    session.expire(1.0)
    session.expire(3.0)
    step = session.receive(Ack(1), 3.5)
    assert sent(step) == [Data(2, b"q" * 512)]
    assert step.deadline == 4.5
    assert session.expire(4.5).send == step.send
    assert session.expire(6.5).send == step.send
    assert session.expire(10.5).outcome is not None


def test_duplicate_ack_sends_nothing() -> None:
    """Sorcerer's Apprentice: a duplicated ACK must not duplicate the next block."""
    session = make(b"d" * 1500)
    session.start(0.0)
    assert sent(session.receive(Ack(1), 0.1)) == [Data(2, b"d" * 512)]
    duplicate = session.receive(Ack(1), 0.2)
    assert duplicate.send == ()
    assert duplicate.deadline == 1.1
    assert sent(session.receive(Ack(2), 0.3)) == [Data(3, b"d" * 476)]


def test_ack_for_a_block_not_sent_is_ignored() -> None:
    session = make(b"d" * 1500)
    session.start(0.0)
    assert session.receive(Ack(2), 0.1).send == ()
    assert session.receive(Ack(65535), 0.1).send == ()


def test_exact_multiple_ends_with_an_empty_block() -> None:
    session = make(b"e" * 1024)
    session.start(0.0)
    session.receive(Ack(1), 0.1)
    assert sent(session.receive(Ack(2), 0.2)) == [Data(3, b"")]
    step = session.receive(Ack(3), 0.3)
    assert step.outcome is not None
    assert step.outcome.bytes_acked == 1024


def test_empty_file_is_one_empty_block() -> None:
    session = make(b"")
    assert sent(session.start(0.0)) == [Data(1, b"")]
    assert session.receive(Ack(1), 0.1).outcome is not None


def test_windows_and_restart_after_a_gap() -> None:
    data = bytes(range(75))  # blksize 8: blocks 1..10, the last one 3 bytes
    session = make(data, {"blksize": "8", "windowsize": "4"})
    session.start(0.0)
    window = sent(session.receive(Ack(0), 0.1))
    assert [p.block for p in window if isinstance(p, Data)] == [1, 2, 3, 4]
    window = sent(session.receive(Ack(4), 0.2))
    assert [p.block for p in window if isinstance(p, Data)] == [5, 6, 7, 8]
    # Timeout: the unacknowledged window goes again.
    assert [p.block for p in sent(session.expire(1.2)) if isinstance(p, Data)] == [5, 6, 7, 8]
    # The client got 5 and 6 only: a new window starts after 6.
    window = sent(session.receive(Ack(6), 1.3))
    assert window == [Data(n, data[(n - 1) * 8 : n * 8]) for n in (7, 8, 9, 10)]
    # A late ACK for 5 is old news.
    assert session.receive(Ack(5), 1.4).send == ()
    step = session.receive(Ack(10), 1.5)
    assert step.outcome is not None
    assert step.outcome.ending is Ending.COMPLETED


def test_block_numbers_wrap_to_zero() -> None:
    blocks = 65540
    data = bytes(8 * blocks)  # blksize 8: blocks 1..65540 full, then an empty block 65541
    session = make(data, {"blksize": "8", "windowsize": "64"})
    step = session.start(0.0)
    step = session.receive(Ack(0), 0.0)
    numbers: list[int] = []
    received = bytearray()
    while step.outcome is None:
        packets = sent(step)
        for packet in packets:
            assert isinstance(packet, Data)
            numbers.append(packet.block)
            received += packet.data
        step = session.receive(Ack(numbers[-1]), 0.0)
    assert bytes(received) == data
    assert numbers[65533:65538] == [65534, 65535, 0, 1, 2]
    assert numbers[-1] == (blocks + 1) & 0xFFFF
    assert step.outcome.bytes_acked == len(data)


# --- a lossy simulated client -------------------------------------------------------------


def _link(items: list[T], rng: random.Random, loss: float, reorder: float) -> list[T]:
    """What crosses the link: `loss` dropped, `reorder` duplicated or swapped with the next one."""
    out = [item for item in items if rng.random() >= loss]
    for i in range(len(out)):
        if rng.random() < reorder:
            out.insert(i, out[i])  # a duplicate
        if i + 1 < len(out) and rng.random() < reorder:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


class SpanCheckedSource:
    """A source that records every read the session makes outside the span it announced."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.allowed = (0, 0)
        self.reads = 0
        self.outside: list[tuple[int, int, tuple[int, int]]] = []

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        self.reads += 1
        start, span = self.allowed
        end = min(offset + length, self.size)
        if end > offset and not (start <= offset and end <= start + span):
            self.outside.append((offset, length, self.allowed))
        return self.data[offset : offset + length]


class SpanChecked:
    """Drives a session like an adapter that loads only `span()` before each event."""

    def __init__(self, session: ReadSession, source: SpanCheckedSource) -> None:
        self.session, self.source = session, source

    @property
    def outcome(self) -> Outcome | None:
        return self.session.outcome

    def start(self, now: float) -> Step:
        self.source.allowed = self.session.span()
        return self.session.start(now)

    def receive(self, packet: Packet, now: float) -> Step:
        self.source.allowed = self.session.span()
        return self.session.receive(packet, now)

    def expire(self, now: float) -> Step:
        self.source.allowed = self.session.span()
        return self.session.expire(now)


def _simulate(
    data: bytes,
    windowsize: int,
    seed: int,
    loss: float,
    reorder: float = 0.0,
    source: SpanCheckedSource | None = None,
) -> tuple[Ending, bytes]:
    """Run a session against an RFC 7440 client over a link that drops, duplicates, reorders."""
    rng = random.Random(seed)
    config = SessionConfig(timeout=1.0, retries=60)
    options = {"blksize": "8", "windowsize": str(windowsize)}
    session: ReadSession | SpanChecked = make(data, options, config)
    if source is not None:
        session = SpanChecked(ReadSession(source, options, config), source)
    received = bytearray()
    expected = 1  # absolute number of the next block the client wants
    since_ack = 0
    finished = False
    now = 0.0
    step = session.start(now)
    while session.outcome is None:
        acks: list[Ack] = []
        for datagram in _link(list(step.send), rng, loss, reorder):
            packet = parse(datagram)
            if isinstance(packet, OptionAck):
                acks.append(Ack(0))
            elif isinstance(packet, Data) and not finished and packet.block == expected & 0xFFFF:
                received += packet.data
                since_ack += 1
                expected += 1
                if len(packet.data) < 8:
                    finished = True
                if finished or since_ack == windowsize:
                    acks.append(Ack((expected - 1) & 0xFFFF))
                    since_ack = 0
            elif isinstance(packet, Data):
                # Out of order, duplicate, or after the end: ACK the last block in order.
                acks.append(Ack((expected - 1) & 0xFFFF))
                since_ack = 0
        replies = [session.receive(a, now) for a in _link(acks, rng, loss, reorder)]
        step = Step(tuple(datagram for reply in replies for datagram in reply.send))
        if not step.send and session.outcome is None:
            deadline = session.expire(now).deadline  # an early call only reports the deadline
            assert deadline is not None
            now = deadline
            step = session.expire(now)
    assert session.outcome is not None
    return session.outcome.ending, bytes(received)


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=200),
    st.integers(1, 8),
    st.integers(0, 2**32),
    st.sampled_from([0.0, 0.1, 0.3]),
)
def test_lossy_link_still_delivers_every_byte(
    data: bytes, windowsize: int, seed: int, loss: float
) -> None:
    ending, received = _simulate(data, windowsize, seed, loss)
    assert ending is Ending.COMPLETED
    assert received == data


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=300),
    st.integers(1, 8),
    st.integers(0, 2**32),
    st.sampled_from([0.1, 0.2]),
)
def test_loss_reordering_and_duplicates_still_deliver_every_byte_once(
    data: bytes, windowsize: int, seed: int, reorder: float
) -> None:
    ending, received = _simulate(data, windowsize, seed, loss=0.1, reorder=reorder)
    assert ending is Ending.COMPLETED
    assert received == data


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=300),
    st.integers(1, 8),
    st.integers(0, 2**32),
    st.sampled_from([0.0, 0.1, 0.3]),
)
def test_every_read_stays_inside_the_announced_span(
    data: bytes, windowsize: int, seed: int, loss: float
) -> None:
    """An adapter that loads `span()` before each event never has the session read elsewhere."""
    source = SpanCheckedSource(data)
    ending, received = _simulate(data, windowsize, seed, loss, reorder=0.1, source=source)
    assert ending is Ending.COMPLETED
    assert received == data
    assert source.reads > 0
    assert source.outside == []


@pytest.mark.parametrize(
    ("size", "options", "events", "span"),
    [
        (1000, {}, [], (0, 512)),  # before start: the first block
        (1000, {"windowsize": "4"}, [], (0, 1000)),  # the first window, cut at the end
        (5000, {"blksize": "512", "windowsize": "2"}, ["start"], (0, 1024)),  # OACK sent
        (5000, {"blksize": "512", "windowsize": "2"}, ["start", 0], (0, 2048)),
        (5000, {"blksize": "512", "windowsize": "2"}, ["start", 0, 2], (1024, 2048)),
        (5000, {"blksize": "512", "windowsize": "2"}, ["start", 0, 1], (512, 2048)),
        (5000, {"blksize": "512", "windowsize": "2"}, ["start", 0, 2, 4, 6, 8], (4096, 904)),
        (5000, {"blksize": "512", "windowsize": "2"}, ["start", 0, 2, 4, 6, 8, 10], (0, 0)),
        (0, {}, [], (0, 0)),
    ],
)
def test_span_names_the_bytes_the_next_event_may_read(
    size: int, options: dict[str, str], events: list[str | int], span: tuple[int, int]
) -> None:
    session = make(bytes(size), options)
    for event in events:
        if event == "start":
            session.start(0.0)
        else:
            assert isinstance(event, int)
            session.receive(Ack(event), 0.0)
    assert session.span() == span

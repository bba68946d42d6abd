"""The client without a real agent: nothing listening, a silent socket, a
fake agent that answers what the test wants, and the codec itself."""

import socket
import threading
import time

import pytest

import lars
from lars import _wire
from conftest import WORKERS, free_udp_ports


def test_no_agent_is_reported_at_once():
    base = free_udp_ports(WORKERS)  # bound and closed: nothing listens
    with lars.Client(base_port=base, workers=WORKERS, timeout=2.0) as c:
        start = time.monotonic()
        with pytest.raises(lars.NoAgent, match="nothing listens"):
            c.get_host(1, 1)
        with pytest.raises(lars.NoAgent):
            c.get_route(1, 1)
        # Far below the 2 s timeout: ICMP told us, we did not wait.
        assert time.monotonic() - start < 1.0
        # A report is fire and forget; its refusal must not be taken for
        # the answer to a later request (drained), which still says
        # NoAgent because nothing listens.
        c.report(1, 1, lars.Host("127.0.0.1", 1), True)
        with pytest.raises(lars.NoAgent):
            c.get_host(1, 1)


def test_timeout_when_nobody_answers(silent_ports):
    base, socks = silent_ports
    with lars.Client(base_port=base, workers=WORKERS, timeout=0.2) as c:
        # Each call waits its timeout (0.2 s), not much less, not much more
        # (the upper bound leaves room for a loaded machine).
        for call in (c.get_host, c.get_route):
            start = time.monotonic()
            with pytest.raises(lars.Timeout, match="no answer"):
                call(1, 1)
            assert 0.2 <= time.monotonic() - start < 0.45
    # The requests did arrive, on the owning worker's port ((1+1) % 3).
    socks[2].settimeout(0)
    msgid, body = _wire.parse_datagram(socks[2].recv(65536))
    assert msgid == _wire.ID_GET_HOST_REQUEST
    req = _wire.decode_get_host_request(body)
    assert (req["modid"], req["cmdid"], req["caps"], req["key"]) == (1, 1, 1, 0)


class FakeAgent:
    """Worker ports played by a thread: answer(msgid, body, sock) is called
    for each request and sends what the test wants."""

    def __init__(self, answer):
        self.base, self.socks = free_udp_ports(WORKERS, keep=True)
        self.answer = answer
        self.stop = False
        self.requests = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        for s in self.socks:
            s.settimeout(0.02)
        while not self.stop:
            for s in self.socks:
                try:
                    data, peer = s.recvfrom(65536)
                except socket.timeout:
                    continue
                msgid, body = _wire.parse_datagram(data)
                self.requests.append((msgid, body))
                for out in self.answer(msgid, body) or ():
                    s.sendto(out, peer)

    def client(self, timeout=0.3):
        return lars.Client(base_port=self.base, workers=WORKERS,
                           timeout=timeout)

    def close(self):
        self.stop = True
        self.thread.join(2)
        for s in self.socks:
            s.close()


@pytest.fixture
def fake():
    agents = []

    def make(answer):
        agents.append(FakeAgent(answer))
        return agents[-1]

    yield make
    for a in agents:
        a.close()


def host_answer(retcode, host_info=None, seq_delta=0):
    def answer(msgid, body):
        if msgid != _wire.ID_GET_HOST_REQUEST:
            return []
        req = _wire.decode_get_host_request(body)
        return [_wire.frame(_wire.ID_GET_HOST_RESPONSE,
                            _wire.encode_get_host_response(
                                req["seq"] + seq_delta, req["modid"],
                                req["cmdid"], retcode, host_info))]
    return answer


@pytest.mark.parametrize("retcode,exc", [
    (_wire.RET_OVERLOAD, lars.Overloaded),
    (_wire.RET_SYSTEM_ERROR, lars.SystemError),
    (_wire.RET_NOEXIST, lars.NoSuchModule),
    (77, lars.ProtocolError),
])
def test_retcodes_map_to_exceptions(fake, retcode, exc):
    with fake(host_answer(retcode)).client() as c:
        with pytest.raises(exc):
            c.get_host(1, 1)
    assert issubclass(exc, lars.Error)


def test_success_without_a_usable_node_is_a_protocol_error(fake):
    with fake(host_answer(_wire.RET_SUCC)).client() as c:
        with pytest.raises(lars.ProtocolError, match="without a node"):
            c.get_host(1, 1)
    bad = _wire.encode_host_info(ip=_wire.ipv4_to_wire("127.0.0.1"), port=0)
    with fake(host_answer(_wire.RET_SUCC, bad)).client() as c:
        with pytest.raises(lars.ProtocolError, match="port 0"):
            c.get_host(1, 1)


def test_answer_of_another_seq_is_ignored(fake):
    node = _wire.encode_host_info(ip=_wire.ipv4_to_wire("127.0.0.1"), port=80)
    with fake(host_answer(_wire.RET_SUCC, node, seq_delta=1)).client() as c:
        with pytest.raises(lars.Timeout):
            c.get_host(1, 1)


def test_garbage_answers_are_a_protocol_error(fake):
    with fake(lambda msgid, body: [
            _wire.HEADER.pack(_wire.ID_GET_HOST_RESPONSE, 3) + b"\xff\xff\xff"
    ]).client() as c:
        with pytest.raises(lars.ProtocolError, match="did not decode"):
            c.get_host(1, 1)


def test_stale_route_answer_is_drained(fake):
    # A get_route answer carries no seq. The first request goes unanswered
    # and times out; then its late answer (port 1000) arrives and waits in
    # the socket. The second request is answered with port 1001. Without
    # the drain before sending, the client would take the stale answer.
    def route(port):
        return _wire.frame(_wire.ID_API_GET_ROUTE_RESPONSE,
                           _wire.encode_get_route_response(1, 1, [
                               _wire.encode_host_info(
                                   ip=_wire.ipv4_to_wire("127.0.0.1"),
                                   port=port)]))

    asked = []

    def answer(msgid, body):
        asked.append(msgid)
        return [] if len(asked) == 1 else [route(1001)]

    agent = fake(answer)
    with agent.client(timeout=0.2) as c:
        with pytest.raises(lars.Timeout):
            c.get_route(1, 1)
        # (1 + 1) % 3: worker 2's port answers module 1/1.
        agent.socks[2].sendto(route(1000), c._socks[2].getsockname())
        time.sleep(0.05)  # queued in the client's socket before it asks
        hosts = c.get_route(1, 1)
    assert [h.port for h in hosts] == [1001]


def test_call_measures_cost_and_reports(fake):
    node = _wire.encode_host_info(ip=_wire.ipv4_to_wire("127.0.0.1"), port=80)
    agent = fake(host_answer(_wire.RET_SUCC, node))
    with agent.client() as c:
        with c.call(1, 1) as host:
            time.sleep(0.03)
        with pytest.raises(KeyError):
            with c.call(1, 1):
                raise KeyError("the block failed")
        with pytest.raises(KeyboardInterrupt):
            with c.call(1, 1):
                raise KeyboardInterrupt()  # abandoned: not reported
    assert host.address == "127.0.0.1:80"
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        reports = [_wire.decode_report_request(b) for m, b in agent.requests
                   if m == _wire.ID_REPORT_REQUEST]
        if len(reports) >= 2:
            break
        time.sleep(0.02)
    time.sleep(0.1)
    reports = [_wire.decode_report_request(b) for m, b in agent.requests
               if m == _wire.ID_REPORT_REQUEST]
    assert len(reports) == 2
    ok, failed = reports
    assert ok["retcode"] == 0 and 30000 <= ok["cost_us"] < 2000000
    assert failed["retcode"] != 0 and failed["cost_us"] >= 1
    assert ok["host"]["port"] == 80
    assert ok["host"]["ip"] == _wire.ipv4_to_wire("127.0.0.1")


# -- the codec ---------------------------------------------------------------

def test_negative_int32_is_a_ten_byte_varint():
    body = _wire.encode_get_route_request(-1, 0)
    assert body == b"\x08" + b"\xff" * 9 + b"\x01"
    assert _wire.decode_get_route_request(body)["modid"] == -1
    assert _wire.ipv4_to_wire("192.168.1.1") < 0
    assert _wire.ipv4_from_wire(_wire.ipv4_to_wire("192.168.1.1")) == "192.168.1.1"


def test_unknown_fields_are_skipped():
    host = _wire.encode_host_info(ip=_wire.ipv4_to_wire("10.0.0.1"), port=80)
    # Field 9 of each wire type: varint, fixed64, bytes, fixed32.
    extra = (b"\x48\x01" + b"\x49" + b"\0" * 8 + b"\x4a\x02ab" +
             b"\x4d" + b"\0" * 4)
    h = _wire.decode_host_info(extra + host + extra)
    assert (h["ip"], h["port"]) == (_wire.ipv4_to_wire("10.0.0.1"), 80)


@pytest.mark.parametrize("data", [
    b"\x08",            # truncated varint
    b"\x1a\x05ab",      # length past the end
    b"\x08" + b"\xff" * 10 + b"\x01",  # varint of 11 bytes
    b"\x0b",            # group start (wire type 3)
    b"\x12\x01",        # port (a varint) sent as bytes
])
def test_bad_bodies_raise(data):
    with pytest.raises(_wire.WireError):
        _wire.decode_host_info(data)


def test_frame_size_must_match_the_datagram():
    data = _wire.frame(_wire.ID_GET_HOST_RESPONSE, b"\x08\x01")
    assert _wire.parse_datagram(data) == (_wire.ID_GET_HOST_RESPONSE, b"\x08\x01")
    for bad in (data[:-1], data + b"\0", data[:7]):
        with pytest.raises(_wire.WireError):
            _wire.parse_datagram(bad)

"""The client against a real lars-agent (the `agent` fixture, conftest.py).

Each test uses modules of its own (conftest.ROUTES) so node statistics of
one test do not leak into another while they share one agent.
"""

import time

import pytest

import lars
from conftest import wait_for


def test_get_host_returns_a_node_of_the_route(client):
    client.reg_init(1, 1)
    seen = {client.get_host(1, 1).address for _ in range(20)}
    # Both nodes are idle, so lb_lars rotates between them.
    assert seen == {"127.0.0.1:9001", "127.0.0.1:9002"}
    h = client.get_host(1, 1)
    assert h.family == 4 and h.weight == 100 and h.zone == "" and h.tags == ()
    assert not h.draining


def test_negative_ids_go_to_the_owning_worker(agent, client):
    # (-5 + 0) mod 3 is 1 for the agent (Euclidean). A request on another
    # worker's port is forwarded and counted, so a wrong port shows here.
    before = agent.metric("lars_forwarded_total")
    client.reg_init(-5, 0)
    assert client.get_host(-5, 0).address == "127.0.0.1:9801"
    assert agent.metric("lars_forwarded_total") == before


def test_keyed_get_host_is_sticky(client):
    client.reg_init(3, 1)
    first = client.get_host(3, 1, key=42)
    for _ in range(100):
        assert client.get_host(3, 1, key=42) == first
    # The key is really used: different keys spread over the ring (with 8
    # nodes, 50 keys on one node would be a broken hash or no key at all).
    spread = {client.get_host(3, 1, key=k).address for k in range(1, 51)}
    assert len(spread) > 1
    # The largest key goes out as a 10-byte varint.
    assert client.get_host(3, 1, key=2**64 - 1).port in range(9301, 9309)


def test_get_route_lists_every_node_with_metadata(client):
    hosts = client.reg_init(2, 1)
    assert hosts == client.get_route(2, 1)
    by_addr = {h.address: h for h in hosts}
    assert set(by_addr) == {"127.0.0.1:9001", "127.0.0.1:9002", "[::1]:9003",
                            "192.168.1.1:9004"}
    a = by_addr["127.0.0.1:9001"]
    assert (a.weight, a.zone, a.tags, a.draining) == (200, "az1", ("canary=1",),
                                                       False)
    b = by_addr["127.0.0.1:9002"]
    assert (b.weight, b.zone, b.tags, b.draining) == (100, "", (), False)
    # 192.168.1.1 is a negative int32 on the wire.
    d = by_addr["192.168.1.1:9004"]
    assert d.ip == "192.168.1.1" and d.draining


def test_ipv6_node_is_given_to_this_client(client):
    # Module 4 has only an IPv6 node: the agent gives it only to a client
    # that sent caps bit 0.
    client.reg_init(4, 1)
    h = client.get_host(4, 1)
    assert (h.family, h.ip, h.port) == (6, "::1", 9003)
    assert h.address == "[::1]:9003"
    six = [h for h in client.get_route(2, 1) if h.family == 6]
    assert [h.address for h in six] == ["[::1]:9003"]


def test_unknown_module_then_reg_init(client):
    with pytest.raises(lars.NoSuchModule, match="get_host 4242/1"):
        client.get_host(4242, 1)
    with pytest.raises(lars.NoSuchModule):
        client.get_route(4242, 1)
    # reg_init gives up after about a second for a module nobody has.
    start = time.monotonic()
    with pytest.raises(lars.NoSuchModule):
        client.reg_init(4242, 1)
    assert time.monotonic() - start < 2.5
    # Module 5 exists but the agent has not been asked yet: its first
    # answer is RET_NOEXIST, so reg_init must ask again to succeed.
    assert [h.address for h in client.reg_init(5, 1)] == ["127.0.0.1:9501"]
    assert client.get_host(5, 1).address == "127.0.0.1:9501"


def reports(agent):
    return agent.metric("lars_requests_total", '{type="report"}')


def test_reports_reach_the_agent(agent, client):
    hosts = {h.address: h for h in client.reg_init(6, 1)}
    before = reports(agent)
    client.report(6, 1, hosts["127.0.0.1:9601"], True, cost_us=1500)
    client.report(6, 1, hosts["127.0.0.1:9601"], False)
    client.report(6, 1, hosts["[::1]:9602"], True)
    # A host built by hand, with an address that is negative on the wire.
    client.report(6, 1, lars.Host("192.168.1.1", 9603), False)
    assert wait_for(lambda: reports(agent) == before + 4)
    assert agent.metric("lars_reports_unknown_total") == 0
    nodes = agent.nodes(6, 1)
    assert (nodes["127.0.0.1:9601"]["succ"], nodes["127.0.0.1:9601"]["err"]) == (1, 1)
    assert (nodes["[::1]:9602"]["succ"], nodes["[::1]:9602"]["err"]) == (1, 0)
    assert (nodes["192.168.1.1:9603"]["succ"], nodes["192.168.1.1:9603"]["err"]) == (0, 1)


def test_call_reports_success_and_failure(agent, client):
    client.reg_init(7, 1)
    node = "127.0.0.1:9701"

    def counts():
        n = agent.nodes(7, 1)[node]
        return n["succ"], n["err"]

    assert counts() == (0, 0)
    with client.call(7, 1) as host:
        assert host.address == node
    assert wait_for(lambda: counts() == (1, 0)), counts()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with client.call(7, 1):
            raise Boom()
    assert wait_for(lambda: counts() == (1, 1)), counts()

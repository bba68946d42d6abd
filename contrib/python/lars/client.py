"""lars.Client: asks the local lars-agent for nodes over UDP and reports
how calls to them went (the same protocol and behaviour as liblars,
core/client/client.c).

Sockets: one UDP socket per agent worker (port base_port + i), connect()ed,
so the kernel drops datagrams from anyone but that port and tells us of
ICMP port unreachable as ECONNREFUSED: with no agent, a call fails at once
(lars.NoAgent) instead of waiting out the timeout. A module always talks to
the worker that owns it, (modid + cmdid) mod workers, as the agent computes
it (core/agent/messages.h lars_module_owner).

Stale datagrams: before each request the socket is drained of answers to
earlier requests that timed out and of errors left by fire-and-forget
reports, so what is read next belongs to this request (a get_route answer
carries no sequence number, only the module).

Threads: a Client is not thread-safe (it owns a sequence counter and its
sockets); create one per thread, as with the C client. Clients share
nothing.
"""

import contextlib
import dataclasses
import ipaddress
import os
import select
import socket
import time

from . import _wire
from .errors import (Error, NoAgent, NoSuchModule, Overloaded, ProtocolError,
                     SocketError, SystemError, Timeout)

__all__ = ["Client", "Host"]

WEIGHT_DEFAULT = 100  # HostInfo.weight 0 = unset = this
_MAX_WORKERS = 1024   # more is a configuration mistake, not a real agent
_DRAIN_MAX = 256      # a flood cannot keep a request draining forever
_REG_INIT_TOTAL = 1.0  # seconds reg_init keeps asking (as liblars)
_REG_INIT_RETRY = 0.05
_SEND_ATTEMPTS = 3
_U32_MAX = 0xFFFFFFFF
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


@dataclasses.dataclass(frozen=True)
class Host:
    """One node of a module.

    ip: "10.0.0.1" or "2001:db8::1" (no brackets, no port)
    port: 1..65535
    family: 4 or 6
    weight: relative capacity (100 when the route does not say)
    zone: where the node runs ("az1"), "" = unknown
    tags: "key=value" labels
    draining: the node takes no new requests (get_route shows such nodes,
              get_host never returns them)

    A Host may be built by hand for report(): only ip, port (and family,
    derived from ip when omitted) identify the node.
    """

    ip: str
    port: int
    family: int = 0
    weight: int = WEIGHT_DEFAULT
    zone: str = ""
    tags: tuple = ()
    draining: bool = False

    def __post_init__(self):
        # Parse once, so a bad address fails here and not in report().
        addr = ipaddress.ip_address(self.ip)
        family = 6 if addr.version == 6 else 4
        if self.family not in (0, family):
            raise ValueError("host %s is IPv%d, not IPv%d" %
                             (self.ip, family, self.family))
        object.__setattr__(self, "family", family)
        object.__setattr__(self, "ip", str(addr))
        object.__setattr__(self, "tags", tuple(self.tags))
        if not 0 < self.port <= 65535:
            raise ValueError("port %r is not 1..65535" % (self.port,))

    @property
    def address(self):
        """"ip:port", or "[v6]:port" for IPv6 (what a URL needs)."""
        if self.family == 6:
            return "[%s]:%d" % (self.ip, self.port)
        return "%s:%d" % (self.ip, self.port)

    def __str__(self):
        return self.address


def _host_from_wire(h):
    """A Host from a decoded HostInfo; ProtocolError when it names no
    node we could call."""
    if not 0 < h["port"] <= 65535:
        raise ProtocolError("the agent sent a node with port %d" % h["port"])
    if len(h["ip6"]) == 16:
        ip = str(ipaddress.IPv6Address(h["ip6"]))
    elif not h["ip6"]:
        ip = _wire.ipv4_from_wire(h["ip"])
    else:
        raise ProtocolError("the agent sent an IPv6 address of %d bytes" %
                            len(h["ip6"]))
    return Host(ip=ip, port=h["port"], weight=h["weight"] or WEIGHT_DEFAULT,
                zone=h["zone"], tags=tuple(h["tags"]),
                draining=h["draining"])


def _host_to_wire(host):
    """The HostInfo of a report: the node's identity, (ip, port) or
    (ip6, port) with ip 0, as the agent gave it."""
    if not isinstance(host, Host):
        raise TypeError("report() needs a lars.Host, not %s" %
                        type(host).__name__)
    if host.family == 6:
        return _wire.encode_host_info(
            port=host.port, ip6=ipaddress.IPv6Address(host.ip).packed)
    return _wire.encode_host_info(ip=_wire.ipv4_to_wire(host.ip),
                                  port=host.port)


def _check_int32(name, value):
    if not isinstance(value, int) or not _I32_MIN <= value <= _I32_MAX:
        raise ValueError("%s %r is not an int32" % (name, value))


class Client:
    """A client of the local lars-agent.

    agent_ip: IPv4 of the agent (default 127.0.0.1)
    base_port: the agent's agent.udp_base_port
    workers: the agent's agent.workers
    timeout: seconds each call waits for an answer at most

    Not thread-safe: one client per thread. Use as a context manager, or
    call close(), to release the sockets.
    """

    def __init__(self, agent_ip="127.0.0.1", base_port=8888, workers=3,
                 timeout=0.5):
        try:
            ipaddress.IPv4Address(agent_ip)
        except ValueError:
            raise ValueError("agent_ip %r is not an IPv4 address" %
                             (agent_ip,)) from None
        if not isinstance(workers, int) or not 0 < workers <= _MAX_WORKERS:
            raise ValueError("workers %r is not 1..%d" %
                             (workers, _MAX_WORKERS))
        # Every worker port must exist.
        if (not isinstance(base_port, int) or base_port <= 0 or
                base_port + workers - 1 > 65535):
            raise ValueError("base_port %r with %d workers is past port "
                             "65535" % (base_port, workers))
        if not timeout > 0:
            raise ValueError("timeout %r is not positive" % (timeout,))
        self.agent_ip = agent_ip
        self.base_port = base_port
        self.workers = workers
        self.timeout = float(timeout)
        # A random start keeps a fresh client from matching answers meant
        # for an earlier process that had the same ephemeral port.
        self._seq = int.from_bytes(os.urandom(4), "little")
        self._socks = []
        try:
            for i in range(workers):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._socks.append(s)
                # Non-blocking: we read only after poll() says so, and the
                # drain before a request must never block.
                s.setblocking(False)
                s.connect((agent_ip, base_port + i))
        except OSError:
            self.close()
            raise

    # -- lifecycle ---------------------------------------------------------

    def close(self):
        """Closes the sockets. Calling it again is fine."""
        socks, self._socks = self._socks, []
        for s in socks:
            s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- plumbing ----------------------------------------------------------

    def _owner(self, modid, cmdid):
        """Index of the worker that owns the module. Python's % with a
        positive divisor is already the Euclidean modulo the agent uses
        (lars_module_owner), so negative ids land on the same port."""
        return (modid + cmdid) % self.workers

    def _sock(self, idx):
        if not self._socks:
            raise ValueError("the lars client is closed")
        return self._socks[idx]

    def _where(self, idx):
        return "%s:%d" % (self.agent_ip, self.base_port + idx)

    def _no_agent(self, idx, what):
        return NoAgent(
            "%s: nothing listens on %s (lars-agent not running, or not "
            "with udp_base_port=%d and workers=%d?)" %
            (what, self._where(idx), self.base_port, self.workers))

    def _drain(self, sock):
        """Drops stale answers (of requests that timed out) and pending
        ICMP errors (of earlier fire-and-forget reports)."""
        for _ in range(_DRAIN_MAX):
            try:
                sock.recv(_wire.MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                continue  # an old refusal; this request finds out anew
            except OSError:
                return  # shows up again on send/recv

    def _send(self, idx, msgid, body, what):
        """Sends one frame. A refusal pending from an earlier datagram may
        surface on this send (the datagram is then not sent); it says
        nothing about this one, so try again a bounded number of times."""
        sock = self._sock(idx)
        data = _wire.frame(msgid, body)
        for _ in range(_SEND_ATTEMPTS):
            try:
                sock.send(data)
                return
            except (ConnectionRefusedError, InterruptedError):
                continue
            except OSError as e:
                raise SocketError("%s: send to %s: %s" %
                                  (what, self._where(idx), e.strerror),
                                  e.errno) from e
        raise self._no_agent(idx, what)

    def _wait(self, idx, deadline, want, decode, match, what):
        """Waits for the answer to the request just sent on socket idx: a
        datagram with msgid ``want`` whose decoded body ``match``es.
        Anything else is dropped (late answers, garbage)."""
        sock = self._sock(idx)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        undecodable = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                # The only answers were garbage: say so, that is more
                # useful than "is the agent running?".
                if undecodable:
                    raise ProtocolError("%s: the answer from %s did not "
                                        "decode: %s" %
                                        (what, self._where(idx), undecodable))
                raise Timeout("%s: no answer from %s within %.3f s" %
                              (what, self._where(idx), self.timeout))
            if not poller.poll(max(1, int(left * 1000 + 0.999))):
                continue  # the loop head decides whether time is up
            try:
                # One byte more than the largest valid datagram, so an
                # oversized one fails the size check instead of being
                # parsed cut.
                data = sock.recv(_wire.MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionRefusedError:
                raise self._no_agent(idx, what) from None
            except OSError as e:
                raise SocketError("%s: receive from %s: %s" %
                                  (what, self._where(idx), e.strerror),
                                  e.errno) from e
            try:
                msgid, body = _wire.parse_datagram(data)
                if msgid != want:
                    continue
                answer = decode(body)
            except _wire.WireError as e:
                undecodable = str(e)
                continue
            if match(answer):
                return answer

    # -- API ---------------------------------------------------------------

    def get_host(self, modid, cmdid, key=0):
        """Asks the agent for one node of modid/cmdid; returns a Host.

        key: the caller's hash key (0..2**64-1, e.g. of a user id) for
        policies that pick by key (lb_ring: the same key, the same node
        while the route holds); 0 = none. Policies that do not hash, and
        an original agent, ignore it.

        Raises NoSuchModule (ask again shortly, or reg_init first),
        Overloaded, SystemError, NoAgent, Timeout, ProtocolError."""
        _check_int32("modid", modid)
        _check_int32("cmdid", cmdid)
        if not isinstance(key, int) or not 0 <= key < (1 << 64):
            raise ValueError("key %r is not 0..2**64-1" % (key,))
        what = "get_host %d/%d" % (modid, cmdid)
        deadline = time.monotonic() + self.timeout
        idx = self._owner(modid, cmdid)
        self._seq = (self._seq + 1) & _U32_MAX
        seq = self._seq
        self._drain(self._sock(idx))
        self._send(idx, _wire.ID_GET_HOST_REQUEST,
                   _wire.encode_get_host_request(seq, modid, cmdid, key,
                                                 _wire.CAP_IP6), what)
        rsp = self._wait(
            idx, deadline, _wire.ID_GET_HOST_RESPONSE,
            _wire.decode_get_host_response,
            lambda r: (r["seq"] == seq and r["modid"] == modid and
                       r["cmdid"] == cmdid), what)
        rc = rsp["retcode"]
        if rc == _wire.RET_SUCC:
            if rsp["host"] is None:
                raise ProtocolError("%s: success without a node" % what)
            return _host_from_wire(rsp["host"])
        if rc == _wire.RET_NOEXIST:
            raise NoSuchModule("%s: the agent has no route for the module "
                               "(yet: it is pulling it; see reg_init)" % what)
        if rc == _wire.RET_OVERLOAD:
            raise Overloaded("%s: every node of the module is overloaded" %
                             what)
        if rc == _wire.RET_SYSTEM_ERROR:
            raise SystemError("%s: the agent reported an internal error "
                              "(see its log)" % what)
        raise ProtocolError("%s: unknown retcode %d" % (what, rc))

    def report(self, modid, cmdid, host, ok, cost_us=0):
        """Tells the agent how a call to ``host`` (from get_host or
        get_route) went: ok true = success. cost_us: the call's latency in
        microseconds for policies that weigh it (lb_p2c), 0 = not
        measured. Does not wait: there is no answer. A refusal of this
        datagram shows up on the next call."""
        _check_int32("modid", modid)
        _check_int32("cmdid", cmdid)
        if not isinstance(cost_us, int) or not 0 <= cost_us <= _U32_MAX:
            raise ValueError("cost_us %r is not 0..2**32-1" % (cost_us,))
        body = _wire.encode_report_request(modid, cmdid, _host_to_wire(host),
                                           0 if ok else 1, cost_us)
        self._send(self._owner(modid, cmdid), _wire.ID_REPORT_REQUEST, body,
                   "report %d/%d" % (modid, cmdid))

    def _route(self, modid, cmdid, deadline):
        what = "get_route %d/%d" % (modid, cmdid)
        idx = self._owner(modid, cmdid)
        self._drain(self._sock(idx))
        self._send(idx, _wire.ID_API_GET_ROUTE_REQUEST,
                   _wire.encode_get_route_request(modid, cmdid,
                                                  _wire.CAP_IP6), what)
        # No seq in this exchange (original protocol): the module is the
        # key, which is why the drain above matters.
        rsp = self._wait(
            idx, deadline, _wire.ID_API_GET_ROUTE_RESPONSE,
            _wire.decode_get_route_response,
            lambda r: r["modid"] == modid and r["cmdid"] == cmdid, what)
        hosts = [_host_from_wire(h) for h in rsp["hosts"]]
        if not hosts:
            raise NoSuchModule("%s: the agent has no route for the module "
                               "(yet: it is pulling it; see reg_init)" % what)
        return hosts

    def get_route(self, modid, cmdid):
        """The module's whole route: a list of Host, IPv6 and draining
        nodes included. Raises NoSuchModule when the agent knows no node
        of it (the first ask makes the agent pull it), NoAgent, Timeout,
        ProtocolError."""
        _check_int32("modid", modid)
        _check_int32("cmdid", cmdid)
        return self._route(modid, cmdid, time.monotonic() + self.timeout)

    def reg_init(self, modid, cmdid):
        """Makes the agent learn the module ahead of the first get_host:
        asks for the route and asks again (every 50 ms, for about 1 s in
        all, each ask with the usual timeout) until the agent has hosts.
        Returns the route (list of Host); raises NoSuchModule when the
        module still has none, or what get_route raises."""
        _check_int32("modid", modid)
        _check_int32("cmdid", cmdid)
        end = time.monotonic() + _REG_INIT_TOTAL
        while True:
            try:
                return self._route(modid, cmdid,
                                   time.monotonic() + self.timeout)
            except NoSuchModule:
                if time.monotonic() + _REG_INIT_RETRY >= end:
                    raise
            time.sleep(_REG_INIT_RETRY)

    @contextlib.contextmanager
    def call(self, modid, cmdid, key=0):
        """Gets a node, times the block and reports it:

            with client.call(modid, cmdid) as host:
                do_request(host.ip, host.port)

        A block that completes is reported as a success, with its duration
        in microseconds as cost_us; a block that raises an Exception is
        reported as a failure and the exception propagates.
        KeyboardInterrupt, SystemExit and the like (BaseException only)
        abandon the call: nothing is reported, the node is not to blame.
        get_host's errors propagate from the ``with`` line, before the
        block runs. A report that cannot be sent is dropped silently: the
        call's own outcome matters more to the caller, and reports are
        lost anyway while the agent is gone."""
        host = self.get_host(modid, cmdid, key)
        start = time.monotonic_ns()
        try:
            yield host
        except Exception:
            self._report_call(modid, cmdid, host, False, start)
            raise
        self._report_call(modid, cmdid, host, True, start)

    def _report_call(self, modid, cmdid, host, ok, start_ns):
        # At least 1: 0 on the wire means "not measured"; at most what a
        # uint32 holds (a call of over 71 minutes saturates).
        cost = (time.monotonic_ns() - start_ns) // 1000
        cost = min(max(cost, 1), _U32_MAX)
        with contextlib.suppress(Error, OSError):
            self.report(modid, cmdid, host, ok, cost)


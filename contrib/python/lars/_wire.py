"""The Lars UDP wire (DESIGN §3, §3.1): framing and a small protobuf codec.

Only the messages the client API exchanges are encoded and decoded here,
with their field numbers from ``proto/lars.proto``. This is deliberately not a
general protobuf library: the standard library has none, and these messages
need just varints, length-delimited fields (bytes, strings, sub-messages) and
skipping unknown fields, so an agent that grows new fields (additive, §3.1)
still decodes.

Everything here is pure (no sockets, no state) and may be called from any
thread.
"""

import ipaddress
import struct

# MessageId of proto/lars.proto.
ID_GET_HOST_REQUEST = 4
ID_GET_HOST_RESPONSE = 5
ID_REPORT_REQUEST = 6
ID_API_GET_ROUTE_REQUEST = 7
ID_API_GET_ROUTE_RESPONSE = 8

# LarsRetCode.
RET_SUCC = 0
RET_OVERLOAD = 1
RET_SYSTEM_ERROR = 2
RET_NOEXIST = 3

# Capability bits (GetHostRequest.caps, GetRouteRequest.caps): bit 0 = we
# understand HostInfo.ip6 and the node metadata, so the agent may send both.
CAP_IP6 = 1

HEADER = struct.Struct("<ii")  # msgid, body length; little-endian int32s
HEADER_SIZE = HEADER.size
MAX_UDP_BODY = 65527  # the original Lars limit, which the agent enforces
MAX_DATAGRAM = HEADER_SIZE + MAX_UDP_BODY

# Protobuf wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF


class WireError(ValueError):
    """A frame or body that does not decode (the client maps it to
    lars.ProtocolError)."""


# --------------------------------------------------------------------------
# Encoding


def _varint(value):
    """Unsigned base-128 varint of a value already in 0..2**64-1."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field, wire_type):
    return _varint((field << 3) | wire_type)


def _int_field(field, value):
    """An int32/int64/uint32/uint64/bool field, left out when 0 (proto3:
    the default is not sent, exactly what protobuf-c and the original send).
    A negative int32 goes out as its 64-bit two's complement: a 10-byte
    varint, as protobuf requires (not zigzag: none of our fields is sint)."""
    if not value:
        return b""
    return _key(field, _VARINT) + _varint(int(value) & _U64)


def _bytes_field(field, data):
    if not data:
        return b""
    return _key(field, _LEN) + _varint(len(data)) + bytes(data)


def encode_host_info(ip=0, port=0, ip6=b""):
    """A HostInfo body with the node's identity only (what a report needs;
    the agent identifies a node by (ip or ip6, port)). ``ip`` is the int32
    of DESIGN §3 (may be negative)."""
    return _int_field(1, ip) + _int_field(2, port) + _bytes_field(5, ip6)


def encode_get_host_request(seq, modid, cmdid, key=0, caps=0):
    return (_int_field(1, seq) + _int_field(2, modid) + _int_field(3, cmdid) +
            _int_field(4, key) + _int_field(5, caps))


def encode_get_route_request(modid, cmdid, caps=0):
    return _int_field(1, modid) + _int_field(2, cmdid) + _int_field(3, caps)


def encode_report_request(modid, cmdid, host_info, retcode, cost_us=0):
    """``host_info`` is an encoded HostInfo body. It is sent even when
    empty (a node 0.0.0.0:0 is not one we ever report, but a present
    sub-message is what the agent expects)."""
    return (_int_field(1, modid) + _int_field(2, cmdid) +
            _key(3, _LEN) + _varint(len(host_info)) + host_info +
            _int_field(4, retcode) + _int_field(5, cost_us))


def encode_get_route_response(modid, cmdid, host_infos):
    """For tests that play the agent: ``host_infos`` are encoded HostInfo
    bodies."""
    out = _int_field(1, modid) + _int_field(2, cmdid)
    for h in host_infos:
        out += _key(3, _LEN) + _varint(len(h)) + h
    return out


def encode_get_host_response(seq, modid, cmdid, retcode, host_info=None):
    """For tests that play the agent."""
    out = (_int_field(1, seq) + _int_field(2, modid) + _int_field(3, cmdid) +
           _int_field(4, retcode))
    if host_info is not None:
        out += _key(5, _LEN) + _varint(len(host_info)) + host_info
    return out


def frame(msgid, body):
    """One datagram: the 8-byte header, then the body."""
    if len(body) > MAX_UDP_BODY:
        raise WireError("body of %d bytes exceeds the UDP limit of %d" %
                        (len(body), MAX_UDP_BODY))
    return HEADER.pack(msgid, len(body)) + body


# --------------------------------------------------------------------------
# Decoding


def parse_datagram(data):
    """Splits a datagram into (msgid, body). The header's length must
    account for the whole datagram (DESIGN §3: one frame per datagram)."""
    if len(data) < HEADER_SIZE:
        raise WireError("datagram of %d bytes is shorter than the header" %
                        len(data))
    msgid, length = HEADER.unpack_from(data)
    if length < 0 or length > MAX_UDP_BODY:
        raise WireError("body length %d out of range" % length)
    if HEADER_SIZE + length != len(data):
        raise WireError("header says %d body bytes, datagram has %d" %
                        (length, len(data) - HEADER_SIZE))
    return msgid, bytes(data[HEADER_SIZE:])


def _read_varint(buf, pos):
    result = 0
    shift = 0
    # At most 10 bytes: 64 bits. Longer is not protobuf, and a bound keeps
    # a hostile datagram from making us build a huge integer.
    for _ in range(10):
        if pos >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _U64, pos
        shift += 7
    raise WireError("varint longer than 10 bytes")


def _fields(buf):
    """Yields (field, wire_type, value) of a message body: an int for
    varints and fixed fields, bytes for length-delimited ones. Groups (wire
    types 3 and 4, deprecated) are not something any Lars peer sends."""
    pos = 0
    end = len(buf)
    while pos < end:
        tag, pos = _read_varint(buf, pos)
        field, wire_type = tag >> 3, tag & 7
        if field == 0:
            raise WireError("field number 0")
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire_type == _LEN:
            length, pos = _read_varint(buf, pos)
            if length > end - pos:
                raise WireError("field %d: length %d past the end" %
                                (field, length))
            value = buf[pos:pos + length]
            pos += length
        elif wire_type == _I64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            value = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire_type == _I32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            value = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise WireError("field %d: unsupported wire type %d" %
                            (field, wire_type))
        yield field, wire_type, value


def _int32(value):
    """A varint read as int32: protobuf truncates to the low 32 bits."""
    value &= _U32
    return value - (1 << 32) if value & 0x80000000 else value


def _uint32(value):
    return value & _U32


def _text(value):
    # proto3 strings are UTF-8. A label we cannot read is not worth failing
    # the whole answer over (the node is still callable), so replace.
    return bytes(value).decode("utf-8", errors="replace")


def _expect(field, wire_type, want):
    # A known field with the wrong wire type means we and the peer disagree
    # about the schema: say so instead of guessing.
    if wire_type != want:
        raise WireError("field %d: wire type %d, expected %d" %
                        (field, wire_type, want))


def decode_host_info(buf):
    """HostInfo as a dict: ip (int32 as on the wire), port, weight, zone,
    ip6 (bytes), tags (list of str), draining (bool). Unknown fields are
    skipped; repeated scalars would be last-wins, as protobuf says."""
    h = {"ip": 0, "port": 0, "weight": 0, "zone": "", "ip6": b"",
         "tags": [], "draining": False}
    for field, wire_type, value in _fields(buf):
        if field == 1:
            _expect(field, wire_type, _VARINT)
            h["ip"] = _int32(value)
        elif field == 2:
            _expect(field, wire_type, _VARINT)
            h["port"] = _int32(value)
        elif field == 3:
            _expect(field, wire_type, _VARINT)
            h["weight"] = _uint32(value)
        elif field == 4:
            _expect(field, wire_type, _LEN)
            h["zone"] = _text(value)
        elif field == 5:
            _expect(field, wire_type, _LEN)
            h["ip6"] = bytes(value)
        elif field == 6:
            _expect(field, wire_type, _LEN)
            h["tags"].append(_text(value))
        elif field == 7:
            _expect(field, wire_type, _VARINT)
            h["draining"] = value != 0
    return h


def decode_get_host_response(buf):
    """GetHostResponse as a dict; ``host`` is None when absent."""
    r = {"seq": 0, "modid": 0, "cmdid": 0, "retcode": 0, "host": None}
    for field, wire_type, value in _fields(buf):
        if field == 1:
            _expect(field, wire_type, _VARINT)
            r["seq"] = _uint32(value)
        elif field == 2:
            _expect(field, wire_type, _VARINT)
            r["modid"] = _int32(value)
        elif field == 3:
            _expect(field, wire_type, _VARINT)
            r["cmdid"] = _int32(value)
        elif field == 4:
            _expect(field, wire_type, _VARINT)
            r["retcode"] = _int32(value)
        elif field == 5:
            _expect(field, wire_type, _LEN)
            r["host"] = decode_host_info(value)
    return r


def decode_get_route_response(buf):
    """GetRouteResponse as a dict with ``hosts``, a list of HostInfo dicts."""
    r = {"modid": 0, "cmdid": 0, "hosts": []}
    for field, wire_type, value in _fields(buf):
        if field == 1:
            _expect(field, wire_type, _VARINT)
            r["modid"] = _int32(value)
        elif field == 2:
            _expect(field, wire_type, _VARINT)
            r["cmdid"] = _int32(value)
        elif field == 3:
            _expect(field, wire_type, _LEN)
            r["hosts"].append(decode_host_info(value))
    return r


def decode_report_request(buf):
    """ReportRequest as a dict (for tests that play the agent)."""
    r = {"modid": 0, "cmdid": 0, "host": None, "retcode": 0, "cost_us": 0}
    for field, wire_type, value in _fields(buf):
        if field == 1:
            r["modid"] = _int32(value)
        elif field == 2:
            r["cmdid"] = _int32(value)
        elif field == 3:
            r["host"] = decode_host_info(value)
        elif field == 4:
            r["retcode"] = _int32(value)
        elif field == 5:
            r["cost_us"] = _uint32(value)
    return r


def decode_get_host_request(buf):
    """GetHostRequest as a dict (for tests that play the agent)."""
    r = {"seq": 0, "modid": 0, "cmdid": 0, "key": 0, "caps": 0}
    for field, _wire_type, value in _fields(buf):
        if field == 1:
            r["seq"] = _uint32(value)
        elif field == 2:
            r["modid"] = _int32(value)
        elif field == 3:
            r["cmdid"] = _int32(value)
        elif field == 4:
            r["key"] = value
        elif field == 5:
            r["caps"] = _uint32(value)
    return r


def decode_get_route_request(buf):
    """GetRouteRequest as a dict (for tests that play the agent)."""
    r = {"modid": 0, "cmdid": 0, "caps": 0}
    for field, _wire_type, value in _fields(buf):
        if field == 1:
            r["modid"] = _int32(value)
        elif field == 2:
            r["cmdid"] = _int32(value)
        elif field == 3:
            r["caps"] = _uint32(value)
    return r


# --------------------------------------------------------------------------
# HostInfo.ip (DESIGN §3): the IPv4 address as the integer of its dotted
# quad, carried in an int32, so 192.168.x.x is negative on the wire.


def ipv4_to_wire(text):
    value = int(ipaddress.IPv4Address(text))
    return value - (1 << 32) if value & 0x80000000 else value


def ipv4_from_wire(value):
    return str(ipaddress.IPv4Address(value & _U32))

package lars

// The Lars wire format (DESIGN §3): an 8-byte little-endian header (int32
// message id, int32 body length) and a protobuf body. This file encodes and
// decodes exactly the messages the client exchanges with lars-agent, by hand,
// so the package needs nothing beyond the standard library (no generated
// code, no protobuf runtime). Field numbers follow proto/lars.proto.

import (
	"encoding/binary"
	"errors"
)

// Message ids (proto/lars.proto, enum MessageId).
const (
	idGetHostRequest      = 4
	idGetHostResponse     = 5
	idReportRequest       = 6
	idAPIGetRouteRequest  = 7
	idAPIGetRouteResponse = 8
)

// Agent return codes (enum LarsRetCode).
const (
	retSucc        = 0
	retOverload    = 1
	retSystemError = 2
	retNoExist     = 3
)

// capIP6 is bit 0 of GetHostRequest.caps / GetRouteRequest.caps: we
// understand HostInfo.ip6 and the node metadata, so the agent may send both.
const capIP6 = 1

const (
	headerSize = 8
	// maxUDPBody is the original Lars limit: a body and its header fit one
	// UDP datagram.
	maxUDPBody  = 65527
	maxDatagram = headerSize + maxUDPBody
)

// Protobuf wire types we meet; groups (3, 4) are not used by proto3 and
// are rejected as malformed.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

var errMalformed = errors.New("malformed protobuf")

// hostInfo is HostInfo as it travels.
type hostInfo struct {
	ip       int32
	port     int32
	weight   uint32
	zone     string
	ip6      []byte
	tags     []string
	draining bool
}

type getHostResponse struct {
	seq     uint32
	modid   int32
	cmdid   int32
	retcode int32
	host    *hostInfo // nil when the field is absent
}

type getRouteResponse struct {
	modid int32
	cmdid int32
	hosts []hostInfo
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendTag(b []byte, field int, wireType int) []byte {
	return appendVarint(b, uint64(field)<<3|uint64(wireType))
}

// appendInt32 writes a proto3 int32: zero is the default and not sent, and
// a negative value is sign-extended to 64 bits (a 10-byte varint), as every
// protobuf implementation does, so 192.168.x.x addresses decode on the agent.
func appendInt32(b []byte, field int, v int32) []byte {
	if v == 0 {
		return b
	}
	return appendVarint(appendTag(b, field, wireVarint), uint64(int64(v)))
}

func appendUint(b []byte, field int, v uint64) []byte {
	if v == 0 {
		return b
	}
	return appendVarint(appendTag(b, field, wireVarint), v)
}

func appendBytes(b []byte, field int, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = appendVarint(appendTag(b, field, wireBytes), uint64(len(v)))
	return append(b, v...)
}

func appendBool(b []byte, field int, v bool) []byte {
	if !v {
		return b
	}
	return appendVarint(appendTag(b, field, wireVarint), 1)
}

func encodeHostInfo(h *hostInfo) []byte {
	var b []byte
	b = appendInt32(b, 1, h.ip)
	b = appendInt32(b, 2, h.port)
	b = appendUint(b, 3, uint64(h.weight))
	b = appendBytes(b, 4, []byte(h.zone))
	b = appendBytes(b, 5, h.ip6)
	for _, t := range h.tags {
		// A repeated string sends empty elements too: dropping one
		// would change the list.
		b = appendVarint(appendTag(b, 6, wireBytes), uint64(len(t)))
		b = append(b, t...)
	}
	return appendBool(b, 7, h.draining)
}

func encodeGetHostRequest(seq uint32, modid, cmdid int32, key uint64, caps uint32) []byte {
	var b []byte
	b = appendUint(b, 1, uint64(seq))
	b = appendInt32(b, 2, modid)
	b = appendInt32(b, 3, cmdid)
	b = appendUint(b, 4, key) // 0 = none: not on the wire, as the C client
	return appendUint(b, 5, uint64(caps))
}

func encodeGetRouteRequest(modid, cmdid int32, caps uint32) []byte {
	var b []byte
	b = appendInt32(b, 1, modid)
	b = appendInt32(b, 2, cmdid)
	return appendUint(b, 3, uint64(caps))
}

func encodeReportRequest(modid, cmdid int32, h *hostInfo, retcode int32, costUs uint32) []byte {
	var b []byte
	b = appendInt32(b, 1, modid)
	b = appendInt32(b, 2, cmdid)
	// A present but empty HostInfo is still sent: the agent needs to see
	// the field to know which node the report is about.
	hb := encodeHostInfo(h)
	b = appendVarint(appendTag(b, 3, wireBytes), uint64(len(hb)))
	b = append(b, hb...)
	b = appendInt32(b, 4, retcode)
	return appendUint(b, 5, uint64(costUs))
}

// frame puts the 8-byte header in front of a body.
func frame(msgid int32, body []byte) []byte {
	out := make([]byte, headerSize, headerSize+len(body))
	binary.LittleEndian.PutUint32(out[0:], uint32(msgid))
	binary.LittleEndian.PutUint32(out[4:], uint32(len(body)))
	return append(out, body...)
}

// parseFrame checks one datagram: a header whose length is exactly the rest
// of the datagram (DESIGN §3) and within the UDP limit.
func parseFrame(d []byte) (msgid int32, body []byte, ok bool) {
	if len(d) < headerSize {
		return 0, nil, false
	}
	msgid = int32(binary.LittleEndian.Uint32(d[0:]))
	n := binary.LittleEndian.Uint32(d[4:])
	if n > maxUDPBody || uint64(n) != uint64(len(d)-headerSize) {
		return 0, nil, false
	}
	return msgid, d[headerSize:], true
}

// decoder walks the fields of one message.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) varint() uint64 {
	var v uint64
	for i := 0; i < 10; i++ {
		if len(d.b) == 0 {
			break
		}
		c := d.b[0]
		d.b = d.b[1:]
		v |= uint64(c&0x7f) << (7 * uint(i))
		if c < 0x80 {
			return v
		}
	}
	d.err = errMalformed // truncated, or longer than 10 bytes
	return 0
}

// next returns the next field's number and wire type; ok is false at the
// end of the message or on an error (d.err).
func (d *decoder) next() (field int, wireType int, ok bool) {
	if d.err != nil || len(d.b) == 0 {
		return 0, 0, false
	}
	tag := d.varint()
	if d.err != nil {
		return 0, 0, false
	}
	field, wireType = int(tag>>3), int(tag&7)
	if field == 0 || tag>>3 > 1<<29-1 {
		d.err = errMalformed
		return 0, 0, false
	}
	return field, wireType, true
}

func (d *decoder) bytes() []byte {
	n := d.varint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errMalformed
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// skip passes over a field we do not know, so newer agents may add fields.
func (d *decoder) skip(wireType int) {
	switch wireType {
	case wireVarint:
		d.varint()
	case wireBytes:
		d.bytes()
	case wireFixed64, wireFixed32:
		n := 8
		if wireType == wireFixed32 {
			n = 4
		}
		if len(d.b) < n {
			d.err = errMalformed
			return
		}
		d.b = d.b[n:]
	default:
		d.err = errMalformed
	}
}

// want checks the wire type of a field we know; a mismatch is malformed (a
// protobuf parser would refuse it too).
func (d *decoder) want(got, want int) bool {
	if got != want {
		d.err = errMalformed
		return false
	}
	return true
}

// int32 decodes as protobuf does: the low 32 bits of the varint, so both
// the 10-byte form of a negative number and a 5-byte one come out right.
func (d *decoder) int32(wireType int) int32 {
	if !d.want(wireType, wireVarint) {
		return 0
	}
	return int32(d.varint())
}

func (d *decoder) uint32(wireType int) uint32 {
	if !d.want(wireType, wireVarint) {
		return 0
	}
	return uint32(d.varint())
}

func decodeHostInfo(b []byte) (hostInfo, error) {
	var h hostInfo
	d := decoder{b: b}
	for {
		f, wt, ok := d.next()
		if !ok {
			break
		}
		switch f {
		case 1:
			h.ip = d.int32(wt)
		case 2:
			h.port = d.int32(wt)
		case 3:
			h.weight = d.uint32(wt)
		case 4:
			if d.want(wt, wireBytes) {
				h.zone = string(d.bytes())
			}
		case 5:
			if d.want(wt, wireBytes) {
				h.ip6 = append([]byte(nil), d.bytes()...)
			}
		case 6:
			if d.want(wt, wireBytes) {
				h.tags = append(h.tags, string(d.bytes()))
			}
		case 7:
			if d.want(wt, wireVarint) {
				h.draining = d.varint() != 0
			}
		default:
			d.skip(wt)
		}
	}
	return h, d.err
}

// hostInfo reads an embedded HostInfo field of wire type wt; false when it
// is of another wire type or malformed (d.err then says why).
func (d *decoder) hostInfo(wt int) (hostInfo, bool) {
	if !d.want(wt, wireBytes) {
		return hostInfo{}, false
	}
	body := d.bytes()
	if d.err != nil {
		return hostInfo{}, false
	}
	h, err := decodeHostInfo(body)
	if err != nil {
		d.err = err
		return hostInfo{}, false
	}
	return h, true
}

func decodeGetHostResponse(b []byte) (getHostResponse, error) {
	var r getHostResponse
	d := decoder{b: b}
	for {
		f, wt, ok := d.next()
		if !ok {
			break
		}
		switch f {
		case 1:
			r.seq = d.uint32(wt)
		case 2:
			r.modid = d.int32(wt)
		case 3:
			r.cmdid = d.int32(wt)
		case 4:
			r.retcode = d.int32(wt)
		case 5:
			// A repeated occurrence replaces the earlier one rather
			// than merging: the agent never sends two.
			if h, ok := d.hostInfo(wt); ok {
				r.host = &h
			}
		default:
			d.skip(wt)
		}
	}
	return r, d.err
}

func decodeGetRouteResponse(b []byte) (getRouteResponse, error) {
	var r getRouteResponse
	d := decoder{b: b}
	for {
		f, wt, ok := d.next()
		if !ok {
			break
		}
		switch f {
		case 1:
			r.modid = d.int32(wt)
		case 2:
			r.cmdid = d.int32(wt)
		case 3:
			if h, ok := d.hostInfo(wt); ok {
				r.hosts = append(r.hosts, h)
			}
		default:
			d.skip(wt)
		}
	}
	return r, d.err
}

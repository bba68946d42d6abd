package lars

import (
	"encoding/binary"
	"net"
	"strconv"
)

// weightDefault is the weight of a node whose route says none (HostInfo.weight
// 0), and weightMax the largest the agent uses; as core/common/node_meta.h.
const (
	weightDefault = 100
	weightMax     = 1000000
)

// Host is one node of a module, as the agent gave it.
type Host struct {
	// IP is the node's address: 4 bytes for IPv4, 16 for IPv6.
	IP net.IP
	// Port is the node's port.
	Port uint16
	// Weight is the node's relative capacity (100 when its route says none).
	Weight uint32
	// Zone is where the node runs ("az1"), empty when unknown.
	Zone string
	// Tags are the node's "key=value" labels.
	Tags []string
	// Draining is true for a node that takes no new requests: GetRoute
	// lists it, GetHost never gives it.
	Draining bool
}

// String returns the node's address as "ip:port", or "[v6]:port" for IPv6,
// ready for net.Dial.
func (h Host) String() string {
	return net.JoinHostPort(h.IP.String(), strconv.Itoa(int(h.Port)))
}

// hostFromWire turns a HostInfo into a Host; false when it names no node we
// could call (a bad port or an ip6 that is not 16 bytes).
func hostFromWire(hi *hostInfo) (Host, bool) {
	if hi.port <= 0 || hi.port > 65535 {
		return Host{}, false
	}
	h := Host{Port: uint16(hi.port), Zone: hi.zone, Draining: hi.draining}
	switch len(hi.ip6) {
	case 16:
		h.IP = append(net.IP(nil), hi.ip6...)
	case 0:
		// The integer of the dotted quad, carried in an int32 (DESIGN §3).
		h.IP = make(net.IP, 4)
		binary.BigEndian.PutUint32(h.IP, uint32(hi.ip))
	default:
		return Host{}, false
	}
	switch {
	case hi.weight == 0:
		h.Weight = weightDefault
	case hi.weight > weightMax:
		h.Weight = weightMax
	default:
		h.Weight = hi.weight
	}
	if len(hi.tags) > 0 {
		h.Tags = append([]string(nil), hi.tags...)
	}
	return h, true
}

// hostToWire gives a report's HostInfo: the node's identity only, (ip, port)
// or (ip6, port), as the agent answered it. false when h has no address.
func hostToWire(h Host) (hostInfo, bool) {
	hi := hostInfo{port: int32(h.Port)}
	if ip4 := h.IP.To4(); ip4 != nil {
		hi.ip = int32(binary.BigEndian.Uint32(ip4))
	} else if len(h.IP) == net.IPv6len {
		hi.ip6 = h.IP
	} else {
		return hostInfo{}, false
	}
	return hi, true
}

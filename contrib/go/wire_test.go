package lars

import (
	"bytes"
	"reflect"
	"testing"
)

func TestEncodeGetHostRequest(t *testing.T) {
	got := encodeGetHostRequest(1, -1, 2, 300, 1)
	want := []byte{
		0x08, 0x01, // seq 1
		0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // modid -1: 10 bytes
		0x18, 0x02, // cmdid 2
		0x20, 0xac, 0x02, // key 300
		0x28, 0x01, // caps 1
	}
	if !bytes.Equal(got, want) {
		t.Errorf("GetHostRequest\n got % x\nwant % x", got, want)
	}
	// Zero fields are proto3 defaults: not on the wire.
	if got := encodeGetHostRequest(0, 0, 0, 0, 0); len(got) != 0 {
		t.Errorf("all-zero GetHostRequest = % x, want nothing", got)
	}
}

func TestFrame(t *testing.T) {
	f := frame(idAPIGetRouteRequest, []byte{0x08, 0x01})
	if want := []byte{7, 0, 0, 0, 2, 0, 0, 0, 0x08, 0x01}; !bytes.Equal(f, want) {
		t.Fatalf("frame = % x, want % x", f, want)
	}
	id, body, ok := parseFrame(f)
	if !ok || id != idAPIGetRouteRequest || !bytes.Equal(body, []byte{0x08, 0x01}) {
		t.Errorf("parseFrame = %d % x %v", id, body, ok)
	}
	for _, bad := range [][]byte{
		f[:7],                          // short header
		f[:9],                          // body shorter than the header says
		append(f[:10:10], 0),           // longer
		{0, 0, 0, 0, 0xff, 0xff, 0, 0}, // over the UDP limit
	} {
		if _, _, ok := parseFrame(bad); ok {
			t.Errorf("parseFrame(% x) accepted", bad)
		}
	}
}

func TestHostInfoRoundTrip(t *testing.T) {
	in := hostInfo{
		ip: -1062731518, port: 8080, weight: 250, zone: "az1",
		ip6: nil, tags: []string{"canary=1", "", "x=y"}, draining: true,
	}
	out, err := decodeHostInfo(encodeHostInfo(&in))
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Errorf("round trip: %+v, %v; want %+v", out, err, in)
	}
	v6 := hostInfo{port: 1, ip6: bytes.Repeat([]byte{0xfe}, 16)}
	out, err = decodeHostInfo(encodeHostInfo(&v6))
	if err != nil || !reflect.DeepEqual(v6, out) {
		t.Errorf("round trip: %+v, %v; want %+v", out, err, v6)
	}
}

// Fields a newer agent may add are skipped, whatever their wire type; an
// int32 sent as a 5-byte varint (some encoders) decodes too.
func TestDecodeSkipsUnknownFields(t *testing.T) {
	var hb []byte
	hb = appendVarint(appendTag(hb, 9, wireVarint), 1<<40)
	hb = appendInt32(hb, 2, 9001)
	hb = appendBytes(hb, 10, []byte("future"))
	hb = append(appendTag(hb, 11, wireFixed32), 1, 2, 3, 4)
	hb = append(appendTag(hb, 12, wireFixed64), 1, 2, 3, 4, 5, 6, 7, 8)
	hb = appendVarint(appendTag(hb, 1, wireVarint), 0xc0a80202) // 5 bytes, not sign-extended
	hb = appendBytes(hb, 6, []byte("a=b"))
	var b []byte
	b = appendInt32(b, 1, 7)
	b = appendBytes(b, 99, []byte{0xff, 0xff})
	b = appendInt32(b, 2, -3)
	b = appendBytes(b, 3, hb)
	b = appendBytes(b, 3, encodeHostInfo(&hostInfo{ip: 1, port: 2}))
	r, err := decodeGetRouteResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	want := getRouteResponse{modid: 7, cmdid: -3, hosts: []hostInfo{
		{ip: -1062731262, port: 9001, tags: []string{"a=b"}},
		{ip: 1, port: 2},
	}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("decoded %+v\nwant %+v", r, want)
	}
}

func TestDecodeMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"truncated varint":       {0x08, 0x80},
		"truncated bytes":        {0x2a, 0x05, 0x01},
		"field 0":                {0x00, 0x01},
		"group":                  {0x0b},
		"wrong wire type":        {0x0a, 0x01, 0x00}, // seq as bytes
		"bad nested host":        {0x2a, 0x02, 0x08, 0x80},
		"varint over 10 bytes":   append(bytes.Repeat([]byte{0x88}, 11), 0x01),
		"truncated fixed64 skip": {0x79, 1, 2, 3},
	} {
		if _, err := decodeGetHostResponse(b); err == nil {
			t.Errorf("%s: % x decoded", name, b)
		}
	}
	r, err := decodeGetHostResponse(nil)
	if err != nil || r.host != nil {
		t.Errorf("empty message: %+v, %v", r, err)
	}
}

func TestHostFromWire(t *testing.T) {
	h, ok := hostFromWire(&hostInfo{ip: 2130706433, port: 80})
	if !ok || h.String() != "127.0.0.1:80" || h.Weight != 100 {
		t.Errorf("127.0.0.1:80 = %+v %v", h, ok)
	}
	h, ok = hostFromWire(&hostInfo{ip: -1062731518, port: 80, weight: 5000000})
	if !ok || h.String() != "192.168.1.2:80" || h.Weight != weightMax {
		t.Errorf("192.168.1.2:80 = %+v %v", h, ok)
	}
	for _, bad := range []hostInfo{{port: 0}, {port: 65536}, {port: -1}, {port: 1, ip6: []byte{1, 2}}} {
		if _, ok := hostFromWire(&bad); ok {
			t.Errorf("%+v accepted", bad)
		}
	}
}

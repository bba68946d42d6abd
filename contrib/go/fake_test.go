package lars

// Tests with a fake agent: UDP sockets the test binds itself, which stay
// silent or answer what the test says. They need no lars-agent.

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// fakeAgent binds n consecutive free loopback UDP ports, one socket per
// worker, and closes them when the test ends.
func fakeAgent(t *testing.T, n int) (uint16, []*net.UDPConn) {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		base, err := freeUDPPorts(n)
		if err != nil {
			t.Fatal(err)
		}
		var conns []*net.UDPConn
		for i := 0; i < n; i++ {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(base) + i})
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		if len(conns) == n {
			t.Cleanup(func() {
				for _, c := range conns {
					c.Close()
				}
			})
			return base, conns
		}
		for _, c := range conns {
			c.Close()
		}
	}
	t.Fatal("no free UDP ports for a fake agent")
	return 0, nil
}

func newClient(t *testing.T, base uint16, workers int, timeout time.Duration) *Client {
	t.Helper()
	c, err := NewClient(Options{BasePort: base, Workers: workers, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fields decodes a request body into field number -> values (varints, or
// the bytes of length-delimited fields as a string), for checking what the
// client sent.
func fields(t *testing.T, body []byte) map[int][]interface{} {
	t.Helper()
	out := map[int][]interface{}{}
	d := decoder{b: body}
	for {
		f, wt, ok := d.next()
		if !ok {
			break
		}
		switch wt {
		case wireVarint:
			out[f] = append(out[f], d.varint())
		case wireBytes:
			out[f] = append(out[f], string(d.bytes()))
		default:
			t.Fatalf("field %d: wire type %d", f, wt)
		}
	}
	if d.err != nil {
		t.Fatalf("request did not decode: %v", d.err)
	}
	return out
}

// recvFrame reads one request from the fake agent's socket.
func recvFrame(t *testing.T, c *net.UDPConn) (int32, []byte, *net.UDPAddr) {
	t.Helper()
	buf := make([]byte, 70000)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Errorf("fake agent: %v", err)
		return 0, nil, nil
	}
	id, body, ok := parseFrame(buf[:n])
	if !ok {
		t.Errorf("fake agent: a datagram that is not one frame: % x", buf[:n])
	}
	return id, append([]byte(nil), body...), from
}

func hostRsp(seq uint32, modid, cmdid, retcode int32, port int32) []byte {
	var b []byte
	b = appendUint(b, 1, uint64(seq))
	b = appendInt32(b, 2, modid)
	b = appendInt32(b, 3, cmdid)
	b = appendInt32(b, 4, retcode)
	if port != 0 {
		hb := encodeHostInfo(&hostInfo{ip: 0x7f000001, port: port})
		b = appendBytes(b, 5, hb)
	}
	return frame(idGetHostResponse, b)
}

func routeRsp(modid, cmdid int32, ports ...int32) []byte {
	var b []byte
	b = appendInt32(b, 1, modid)
	b = appendInt32(b, 2, cmdid)
	for _, p := range ports {
		b = appendBytes(b, 3, encodeHostInfo(&hostInfo{ip: 0x7f000001, port: p}))
	}
	return frame(idAPIGetRouteResponse, b)
}

func TestNoAgent(t *testing.T) {
	base, err := freeUDPPorts(3)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, base, 3, 3*time.Second)
	start := time.Now()
	_, err = c.GetHost(context.Background(), 1, 1)
	if !errors.Is(err, ErrNoAgent) {
		t.Fatalf("GetHost with nothing listening = %v, want ErrNoAgent", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("ErrNoAgent took %v: it should not wait out the timeout", d)
	}
	// A report's refusal is pending on the socket now; it must not be
	// taken for the next request's (drain), nor fail the next report
	// (send retries).
	if _, err := c.GetRoute(context.Background(), 1, 1); !errors.Is(err, ErrNoAgent) {
		t.Errorf("GetRoute with nothing listening = %v, want ErrNoAgent", err)
	}
	if err := c.RegInit(context.Background(), 1, 1); !errors.Is(err, ErrNoAgent) {
		t.Errorf("RegInit with nothing listening = %v, want ErrNoAgent", err)
	}
}

func TestTimeout(t *testing.T) {
	base, _ := fakeAgent(t, 3) // bound, never answers
	c := newClient(t, base, 3, 200*time.Millisecond)
	for _, call := range []func() error{
		func() error { _, err := c.GetHost(context.Background(), 1, 1); return err },
		func() error { _, err := c.GetRoute(context.Background(), 1, 2); return err },
	} {
		start := time.Now()
		err := call()
		d := time.Since(start)
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("silent agent: %v, want ErrTimeout", err)
		}
		if d < 150*time.Millisecond || d > time.Second {
			t.Errorf("timeout of 200ms took %v", d)
		}
	}
}

func TestContext(t *testing.T) {
	base, _ := fakeAgent(t, 3)
	c := newClient(t, base, 3, 10*time.Second)

	// Cancellation ends a wait that has no deadline of its own.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.GetHost(ctx, 1, 1)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("cancelled GetHost = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled GetHost returned after %v", d)
	}

	// A context deadline before Options.Timeout wins.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	start = time.Now()
	_, err = c.GetRoute(ctx2, 1, 1)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetRoute past the context's deadline = %v, want ErrTimeout and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("GetRoute with a 100ms context returned after %v", d)
	}

	// RegInit between its asks, and an already cancelled context.
	ctx3, cancel3 := context.WithCancel(context.Background())
	cancel3()
	if err := c.RegInit(ctx3, 1, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("RegInit with a cancelled context = %v", err)
	}

	// After a cancelled request the client still works: the watcher
	// left no deadline in the past behind.
	base2, conns := fakeAgent(t, 1)
	c2 := newClient(t, base2, 1, time.Second)
	ctx4, cancel4 := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel4)
	if _, err := c2.GetHost(ctx4, 1, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled GetHost = %v", err)
	}
	recvFrame(t, conns[0]) // the cancelled request
	go func() {
		_, body, from := recvFrame(t, conns[0])
		seq := uint32(fields(t, body)[1][0].(uint64))
		conns[0].WriteToUDP(hostRsp(seq, 1, 1, retSucc, 7000), from)
	}()
	if h, err := c2.GetHost(context.Background(), 1, 1); err != nil || h.Port != 7000 {
		t.Errorf("GetHost after a cancelled one = %v, %v", h, err)
	}
}

// Answers are matched by seq and module; others are dropped. The request
// carries caps = 1 and the key.
func TestGetHostMatching(t *testing.T) {
	base, conns := fakeAgent(t, 1)
	c := newClient(t, base, 1, time.Second)
	go func() {
		id, body, from := recvFrame(t, conns[0])
		if id != idGetHostRequest {
			t.Errorf("message id %d, want %d", id, idGetHostRequest)
		}
		f := fields(t, body)
		if len(f[2]) != 1 || int32(f[2][0].(uint64)) != -5 || len(f[3]) != 1 || f[3][0].(uint64) != 9 {
			t.Errorf("modid/cmdid on the wire: %v %v, want -5 9", f[2], f[3])
		}
		if len(f[4]) != 1 || f[4][0].(uint64) != 0xdeadbeefcafe {
			t.Errorf("key on the wire: %v", f[4])
		}
		if len(f[5]) != 1 || f[5][0].(uint64) != 1 {
			t.Errorf("caps on the wire: %v, want 1", f[5])
		}
		seq := uint32(f[1][0].(uint64))
		conns[0].WriteToUDP(hostRsp(seq-1, -5, 9, retSucc, 1111), from) // stale seq
		conns[0].WriteToUDP(hostRsp(seq, -5, 8, retSucc, 2222), from)   // other module
		conns[0].WriteToUDP(routeRsp(-5, 9, 3333), from)                // other message
		conns[0].WriteToUDP([]byte{5, 0, 0, 0, 9, 0, 0, 0, 1}, from)    // bad length
		conns[0].WriteToUDP(hostRsp(seq, -5, 9, retSucc, 4444), from)   // the answer
		conns[0].WriteToUDP(hostRsp(seq, -5, 9, retSucc, 5555), from)   // a duplicate
	}()
	h, err := c.GetHostKey(context.Background(), -5, 9, 0xdeadbeefcafe)
	if err != nil || h.Port != 4444 || h.String() != "127.0.0.1:4444" {
		t.Fatalf("GetHostKey = %v, %v; want 127.0.0.1:4444", h, err)
	}

	// Key 0 is not sent at all (as the C client and the original).
	go func() {
		_, body, from := recvFrame(t, conns[0])
		f := fields(t, body)
		if _, ok := f[4]; ok {
			t.Errorf("key 0 was sent: %v", f[4])
		}
		conns[0].WriteToUDP(hostRsp(uint32(f[1][0].(uint64)), 1, 1, retOverload, 0), from)
	}()
	if _, err := c.GetHost(context.Background(), 1, 1); !errors.Is(err, ErrOverloaded) {
		t.Errorf("RET_OVERLOAD gave %v, want ErrOverloaded", err)
	}
}

func TestRetcodes(t *testing.T) {
	base, conns := fakeAgent(t, 1)
	c := newClient(t, base, 1, 300*time.Millisecond)
	cases := []struct {
		retcode int32
		port    int32
		want    error
	}{
		{retSystemError, 0, ErrSystem},
		{retNoExist, 0, ErrNoSuchModule},
		{retOverload, 0, ErrOverloaded},
		{42, 0, ErrProtocol},
		{retSucc, 0, ErrProtocol},     // success without a node
		{retSucc, 70000, ErrProtocol}, // a port that cannot be
	}
	for _, tc := range cases {
		tc := tc // the fake agent's goroutine reads it while the loop moves on
		go func() {
			_, body, from := recvFrame(t, conns[0])
			seq := uint32(fields(t, body)[1][0].(uint64))
			conns[0].WriteToUDP(hostRsp(seq, 1, 1, tc.retcode, tc.port), from)
		}()
		_, err := c.GetHost(context.Background(), 1, 1)
		if !errors.Is(err, tc.want) {
			t.Errorf("retcode %d port %d: %v, want %v", tc.retcode, tc.port, err, tc.want)
		}
	}
	// Only undecodable answers: ErrProtocol, not "is the agent running?".
	go func() {
		_, _, from := recvFrame(t, conns[0])
		conns[0].WriteToUDP(frame(idGetHostResponse, []byte{0x08}), from) // truncated varint
	}()
	if _, err := c.GetHost(context.Background(), 1, 1); !errors.Is(err, ErrProtocol) {
		t.Errorf("undecodable answer: %v, want ErrProtocol", err)
	}
}

// A get_route answer has no seq: an answer that came after its request
// timed out must not pass for the next request's (the drain drops it).
func TestGetRouteDrainsStaleAnswers(t *testing.T) {
	base, conns := fakeAgent(t, 1)
	c := newClient(t, base, 1, 100*time.Millisecond)
	go func() {
		_, _, from := recvFrame(t, conns[0])
		time.Sleep(200 * time.Millisecond) // after the client gave up
		conns[0].WriteToUDP(routeRsp(3, 4, 1001), from)
		_, _, from = recvFrame(t, conns[0])
		conns[0].WriteToUDP(routeRsp(3, 5, 1002), from) // another module: dropped
		conns[0].WriteToUDP(routeRsp(3, 4, 2001, 2002), from)
	}()
	if _, err := c.GetRoute(context.Background(), 3, 4); !errors.Is(err, ErrTimeout) {
		t.Fatalf("first GetRoute = %v, want ErrTimeout", err)
	}
	time.Sleep(300 * time.Millisecond) // the late answer is queued now
	hosts, err := c.GetRoute(context.Background(), 3, 4)
	if err != nil || len(hosts) != 2 || hosts[0].Port != 2001 || hosts[1].Port != 2002 {
		t.Fatalf("second GetRoute = %v, %v; want the nodes 2001, 2002 of its own answer", hosts, err)
	}
}

// A report names the node by (ip, port) or (ip6, port) and carries the
// outcome and the cost.
func TestReportWire(t *testing.T) {
	base, conns := fakeAgent(t, 3)
	c := newClient(t, base, 3, time.Second)
	check := func(h Host, ok bool, cost time.Duration, wantHost map[int][]interface{}, wantRet, wantCost uint64) {
		t.Helper()
		if err := c.Report(2, 2, h, ok, cost); err != nil {
			t.Fatalf("Report: %v", err)
		}
		id, body, _ := recvFrame(t, conns[(2+2)%3])
		if id != idReportRequest {
			t.Fatalf("message id %d", id)
		}
		f := fields(t, body)
		hostBody := []byte(f[3][0].(string))
		got := fields(t, hostBody)
		for k, v := range wantHost {
			if len(got[k]) != 1 || got[k][0] != v[0] {
				t.Errorf("HostInfo field %d = %v, want %v", k, got[k], v)
			}
		}
		var ret, costUs uint64
		if len(f[4]) > 0 {
			ret = f[4][0].(uint64)
		}
		if len(f[5]) > 0 {
			costUs = f[5][0].(uint64)
		}
		if ret != wantRet || costUs != wantCost {
			t.Errorf("retcode %d cost_us %d, want %d %d", ret, costUs, wantRet, wantCost)
		}
	}
	v4 := Host{IP: net.ParseIP("192.168.1.2"), Port: 80}
	// 192.168.1.2 is negative as an int32: a 10-byte varint whose low 32
	// bits are the address.
	check(v4, true, 1500*time.Microsecond,
		map[int][]interface{}{1: {uint64(0xffffffffc0a80102)}, 2: {uint64(80)}}, 0, 1500)
	v6 := Host{IP: net.ParseIP("::1"), Port: 9003}
	check(v6, false, 0, map[int][]interface{}{5: {string(net.IPv6loopback)}, 2: {uint64(9003)}}, 1, 0)
	if err := c.Report(1, 1, Host{Port: 1}, true, 0); err == nil {
		t.Error("Report of a host without an address succeeded")
	}
}

func TestNewClientOptions(t *testing.T) {
	c, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.workers) != DefaultWorkers || c.timeout != DefaultTimeout {
		t.Errorf("defaults: %d workers, timeout %v", len(c.workers), c.timeout)
	}
	if got := c.workers[1].conn.RemoteAddr().String(); got != "127.0.0.1:8889" {
		t.Errorf("worker 1 talks to %s, want 127.0.0.1:8889", got)
	}
	for _, o := range []Options{
		{AgentIP: "localhost"},
		{Workers: -1},
		{Workers: 2000},
		{BasePort: 65535, Workers: 2},
		{Timeout: -time.Second},
	} {
		if c, err := NewClient(o); err == nil {
			c.Close()
			t.Errorf("NewClient(%+v) succeeded", o)
		}
	}
}

func TestHostString(t *testing.T) {
	for _, tc := range []struct {
		h    Host
		want string
	}{
		{Host{IP: net.IPv4(10, 0, 0, 1), Port: 80}, "10.0.0.1:80"},
		{Host{IP: net.ParseIP("2001:db8::1"), Port: 443}, "[2001:db8::1]:443"},
	} {
		if got := tc.h.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.h, got, tc.want)
		}
	}
}

// Package lars is the Go client of the local lars-agent: it asks the agent
// over UDP for a node of a service (a module, named by modid and cmdid),
// and reports how calls to that node went, so the agent's policy can steer
// traffic away from failing nodes. It speaks the wire protocol of the C
// client liblars (DESIGN §3 and §3.1) and needs only the standard library.
//
// Every call that waits for the agent ends within Options.Timeout, or
// earlier when its context ends, so business code never blocks forever
// when no agent runs.
//
// Concurrency: a Client is safe for use by many goroutines. It keeps one
// UDP socket per agent worker, and requests that go to the same worker wait
// for each other (each request drains its socket first, which would eat a
// concurrent request's answer); reports never wait. Goroutines that need
// many requests in flight to one module should each create their own
// Client.
package lars

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of Options, as the C client's.
const (
	DefaultAgentIP  = "127.0.0.1"
	DefaultBasePort = 8888
	DefaultWorkers  = 3
	DefaultTimeout  = 500 * time.Millisecond
)

const (
	// maxWorkers bounds the sockets a Client opens: more is a
	// configuration mistake, not a real agent.
	maxWorkers = 1024
	// RegInit asks for about this long, this often, while the agent pulls
	// the route (as lars_reg_init).
	regInitTotal = time.Second
	regInitRetry = 50 * time.Millisecond
	// drainMax bounds the stale datagrams dropped before a request, so a
	// flood cannot keep us draining; what is left is filtered by seq or
	// module anyway.
	drainMax = 256
	// sendAttempts: a refusal pending from an earlier datagram may
	// surface on a send, which then did not go out; it says nothing about
	// this datagram, so try again, a few times.
	sendAttempts = 3
)

// Errors of Client's methods, wrapped with the request (modid/cmdid); test
// them with errors.Is.
var (
	// ErrNoAgent: nothing listens on the agent's port (ECONNREFUSED). It
	// comes at once, not after the timeout, when the kernel reports the
	// refusal (always on loopback).
	ErrNoAgent = errors.New("no lars-agent listening (connection refused)")
	// ErrTimeout: no answer in time. An error for a context whose deadline
	// passed matches both ErrTimeout and context.DeadlineExceeded.
	ErrTimeout = errors.New("no answer from lars-agent in time (is it running?)")
	// ErrNoSuchModule: the agent has no route for the module (RET_NOEXIST,
	// or an empty route). The first request for a module the agent has
	// not seen yet gets it while the agent pulls the route: see RegInit.
	ErrNoSuchModule = errors.New("no such module (the agent has no route for it yet)")
	// ErrOverloaded: every node of the module is overloaded (RET_OVERLOAD).
	ErrOverloaded = errors.New("every node of the module is overloaded")
	// ErrSystem: the agent failed internally (RET_SYSTEM_ERROR), e.g. it
	// tracks as many modules as it may.
	ErrSystem = errors.New("lars-agent reported an internal error")
	// ErrProtocol: the only answers were ones we could not decode, or an
	// answer made no sense (success without a node, an unknown retcode).
	ErrProtocol = errors.New("lars-agent's answer did not decode")
)

// Options says where the agent listens. Zero fields take their defaults.
type Options struct {
	// AgentIP is the agent's address (its agent.listen), default 127.0.0.1.
	AgentIP string
	// BasePort is the agent's udp_base_port, default 8888.
	BasePort uint16
	// Workers is the agent's worker count, default 3: worker i listens on
	// BasePort+i and owns the modules with (modid+cmdid) mod Workers == i.
	Workers int
	// Timeout bounds each call that waits for the agent, default 500ms.
	Timeout time.Duration
}

// Client talks to one lars-agent. Create it with NewClient, release it with
// Close. See the package documentation for concurrency.
type Client struct {
	workers []*worker
	timeout time.Duration
	seq     atomic.Uint32 // last GetHostRequest seq sent
}

// worker is the socket to one agent worker.
type worker struct {
	// conn is connect()ed, so the kernel drops datagrams from anyone but
	// the agent's port and turns ICMP "port unreachable" into ECONNREFUSED.
	conn *net.UDPConn
	raw  syscall.RawConn
	// turn holds one token: the request that has it owns the socket's
	// reading side and buf. A channel, not a mutex, so waiting for it
	// honours the context.
	turn chan struct{}
	buf  []byte
}

// NewClient opens one UDP socket per agent worker. It sends nothing: an agent
// that is not running yet is not an error here.
func NewClient(opts Options) (*Client, error) {
	if opts.AgentIP == "" {
		opts.AgentIP = DefaultAgentIP
	}
	if opts.BasePort == 0 {
		opts.BasePort = DefaultBasePort
	}
	if opts.Workers == 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	ip := net.ParseIP(opts.AgentIP)
	switch {
	case ip == nil:
		return nil, fmt.Errorf("lars: AgentIP %q is not an IP address", opts.AgentIP)
	case opts.Workers < 0 || opts.Workers > maxWorkers:
		return nil, fmt.Errorf("lars: Workers %d is not within 1..%d", opts.Workers, maxWorkers)
	case int(opts.BasePort)+opts.Workers-1 > 65535:
		// Every worker port must exist.
		return nil, fmt.Errorf("lars: BasePort %d + %d workers goes past port 65535",
			opts.BasePort, opts.Workers)
	case opts.Timeout < 0:
		return nil, fmt.Errorf("lars: Timeout %v is negative", opts.Timeout)
	}
	c := &Client{timeout: opts.Timeout}
	// A random start keeps a fresh client from matching answers meant for
	// an earlier process that used the same local port.
	c.seq.Store(uint32(os.Getpid())*2654435761 ^ uint32(time.Now().UnixNano()))
	for i := 0; i < opts.Workers; i++ {
		addr := &net.UDPAddr{IP: ip, Port: int(opts.BasePort) + i}
		conn, err := net.DialUDP("udp", nil, addr)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("lars: socket to %v: %w", addr, err)
		}
		raw, err := conn.SyscallConn()
		if err != nil {
			conn.Close()
			c.Close()
			return nil, fmt.Errorf("lars: socket to %v: %w", addr, err)
		}
		c.workers = append(c.workers, &worker{
			conn: conn,
			raw:  raw,
			turn: make(chan struct{}, 1),
			// One byte more than the largest frame: a bigger
			// datagram then shows as too long instead of being
			// parsed cut.
			buf: make([]byte, maxDatagram+1),
		})
	}
	return c, nil
}

// Close closes the client's sockets; calls in flight end with an error.
func (c *Client) Close() error {
	var first error
	for _, w := range c.workers {
		if err := w.conn.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// owner is the worker owning the module, as the agent computes it
// (lars_module_owner): int64 so modid+cmdid never overflows, and a
// Euclidean remainder so negative ids still land on a real port.
func (c *Client) owner(modid, cmdid int32) *worker {
	n := int64(len(c.workers))
	r := (int64(modid) + int64(cmdid)) % n
	if r < 0 {
		r += n
	}
	return c.workers[r]
}

// GetHost asks the agent for one node of modid/cmdid.
func (c *Client) GetHost(ctx context.Context, modid, cmdid int32) (Host, error) {
	return c.GetHostKey(ctx, modid, cmdid, 0)
}

// GetHostKey is GetHost with the caller's hash key (e.g. of a user id), for
// policies that pick by key (lb_ring): the same key gives the same node
// while the route holds. Key 0 means none, exactly GetHost. Policies that
// do not hash ignore the key.
func (c *Client) GetHostKey(ctx context.Context, modid, cmdid int32, key uint64) (Host, error) {
	seq := c.seq.Add(1)
	req := frame(idGetHostRequest, encodeGetHostRequest(seq, modid, cmdid, key, capIP6))
	var rsp getHostResponse
	err := c.exchange(ctx, c.owner(modid, cmdid), req, idGetHostResponse, func(body []byte) (bool, error) {
		r, err := decodeGetHostResponse(body)
		if err != nil {
			return false, err
		}
		rsp = r
		return r.seq == seq && r.modid == modid && r.cmdid == cmdid, nil
	})
	if err == nil {
		err = retcodeError(rsp.retcode)
	}
	var h Host
	if err == nil {
		ok := rsp.host != nil
		if ok {
			h, ok = hostFromWire(rsp.host)
		}
		if !ok {
			err = fmt.Errorf("%w: success without a node we could call", ErrProtocol)
		}
	}
	if err != nil {
		return Host{}, fmt.Errorf("lars: get_host %d/%d: %w", modid, cmdid, err)
	}
	return h, nil
}

// retcodeError maps the agent's LarsRetCode; a code we do not know is from
// a protocol we do not speak.
func retcodeError(retcode int32) error {
	switch retcode {
	case retSucc:
		return nil
	case retOverload:
		return ErrOverloaded
	case retSystemError:
		return ErrSystem
	case retNoExist:
		return ErrNoSuchModule
	}
	return fmt.Errorf("%w: unknown retcode %d", ErrProtocol, retcode)
}

// GetRoute reads the module's whole route: IPv4 and IPv6 nodes, draining
// ones included, with each node's weight, zone and tags. An unknown module
// (empty route) gives ErrNoSuchModule.
func (c *Client) GetRoute(ctx context.Context, modid, cmdid int32) ([]Host, error) {
	hosts, err := c.getRoute(ctx, modid, cmdid)
	if err != nil {
		return nil, fmt.Errorf("lars: get_route %d/%d: %w", modid, cmdid, err)
	}
	return hosts, nil
}

func (c *Client) getRoute(ctx context.Context, modid, cmdid int32) ([]Host, error) {
	req := frame(idAPIGetRouteRequest, encodeGetRouteRequest(modid, cmdid, capIP6))
	var rsp getRouteResponse
	err := c.exchange(ctx, c.owner(modid, cmdid), req, idAPIGetRouteResponse, func(body []byte) (bool, error) {
		r, err := decodeGetRouteResponse(body)
		if err != nil {
			return false, err
		}
		rsp = r
		// No seq in this exchange (original protocol): the module is
		// the key, and the drain before the request keeps an old
		// answer of the same module out.
		return r.modid == modid && r.cmdid == cmdid, nil
	})
	if err != nil {
		return nil, err
	}
	if len(rsp.hosts) == 0 {
		return nil, ErrNoSuchModule
	}
	hosts := make([]Host, 0, len(rsp.hosts))
	for i := range rsp.hosts {
		h, ok := hostFromWire(&rsp.hosts[i])
		if !ok {
			return nil, fmt.Errorf("%w: a node without a usable address or port", ErrProtocol)
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// RegInit makes the agent learn the module ahead of the first GetHost: it
// asks for the route and asks again, for about a second, until the agent
// has hosts (the first ask starts the agent's pull from its dns side).
// ErrNoSuchModule when the module still has none.
func (c *Client) RegInit(ctx context.Context, modid, cmdid int32) error {
	end := time.Now().Add(regInitTotal)
	for {
		_, err := c.getRoute(ctx, modid, cmdid)
		if !errors.Is(err, ErrNoSuchModule) {
			if err != nil {
				return fmt.Errorf("lars: reg_init %d/%d: %w", modid, cmdid, err)
			}
			return nil
		}
		if !time.Now().Add(regInitRetry).Before(end) {
			return fmt.Errorf("lars: reg_init %d/%d: %w", modid, cmdid, err)
		}
		t := time.NewTimer(regInitRetry)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("lars: reg_init %d/%d: %w", modid, cmdid, contextError(ctx.Err()))
		}
	}
}

// Report tells the agent how a call to h went (ok or not) and how long it
// took (cost; 0 = not measured). h needs only IP and Port. It does not
// wait: the agent sends no answer, so an error means the report could not
// be sent (ErrNoAgent: nothing listens).
func (c *Client) Report(modid, cmdid int32, h Host, ok bool, cost time.Duration) error {
	hi, valid := hostToWire(h)
	if !valid {
		return fmt.Errorf("lars: report %d/%d: host %v has no IP address", modid, cmdid, h)
	}
	var retcode int32 // the agent tells only 0 (success) from the rest
	if !ok {
		retcode = 1
	}
	us := cost.Microseconds()
	if us < 0 {
		us = 0
	} else if us > math.MaxUint32 {
		us = math.MaxUint32
	}
	req := frame(idReportRequest, encodeReportRequest(modid, cmdid, &hi, retcode, uint32(us)))
	// No turn taken: a write is safe beside a reader, and a report must
	// not wait for someone else's request.
	if err := c.owner(modid, cmdid).send(req); err != nil {
		return fmt.Errorf("lars: report %d/%d: %w", modid, cmdid, err)
	}
	return nil
}

// Call asks for a node of the module, runs fn with it, and reports the
// call: a success unless fn returns an error, with fn's run time as the
// cost. It returns fn's error as is, or GetHost's error (fn then does not
// run). A report that cannot be sent is not an error of the call.
func (c *Client) Call(ctx context.Context, modid, cmdid int32, fn func(Host) error) error {
	h, err := c.GetHost(ctx, modid, cmdid)
	if err != nil {
		return err
	}
	start := time.Now()
	ferr := fn(h)
	cost := time.Since(start)
	if cost < time.Microsecond {
		cost = time.Microsecond // 0 on the wire means "not measured"
	}
	_ = c.Report(modid, cmdid, h, ferr == nil, cost)
	return ferr
}

// ctxError is the error of a request whose context ended: it unwraps to the
// context's error, and a passed deadline is also an ErrTimeout.
type ctxError struct{ err error }

func (e ctxError) Error() string { return e.err.Error() }
func (e ctxError) Unwrap() error { return e.err }
func (e ctxError) Is(target error) bool {
	return target == ErrTimeout && errors.Is(e.err, context.DeadlineExceeded)
}

func contextError(err error) error { return ctxError{err} }

// exchange sends req to w and waits for the answer: a frame with message id
// want whose body accept() takes. Other datagrams are dropped; a body that
// does not decode (accept's error) is dropped too, but remembered, so a
// timeout after only such answers says ErrProtocol.
func (c *Client) exchange(ctx context.Context, w *worker, req []byte, want int32,
	accept func(body []byte) (bool, error)) error {
	// The smaller of the context's deadline and our timeout.
	deadline := time.Now().Add(c.timeout)
	ctxDeadline, fromCtx := ctx.Deadline()
	fromCtx = fromCtx && ctxDeadline.Before(deadline)
	if fromCtx {
		deadline = ctxDeadline
	}
	if err := ctx.Err(); err != nil {
		return contextError(err)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case w.turn <- struct{}{}:
	case <-ctx.Done():
		return contextError(ctx.Err())
	case <-timer.C:
		if fromCtx {
			return contextError(context.DeadlineExceeded)
		}
		return ErrTimeout
	}
	defer func() { <-w.turn }()

	if err := w.drain(); err != nil {
		return err
	}
	if err := w.send(req); err != nil {
		return err
	}
	if err := w.conn.SetReadDeadline(deadline); err != nil {
		return err
	}
	// Cancellation has no deadline to set ahead of time: a watcher moves
	// the read deadline into the past when the context ends. We wait for
	// it to quit before returning, so it never touches the deadline of a
	// later request.
	if done := ctx.Done(); done != nil {
		stop := make(chan struct{})
		quit := make(chan struct{})
		go func() {
			defer close(quit)
			select {
			case <-done:
				_ = w.conn.SetReadDeadline(time.Unix(1, 0))
			case <-stop:
			}
		}()
		defer func() {
			close(stop)
			<-quit
		}()
	}
	undecodable := false
	for {
		n, err := w.conn.Read(w.buf)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return contextError(ctx.Err())
			case errors.Is(err, os.ErrDeadlineExceeded) && undecodable:
				// Saying so is more useful than "is it running?".
				return ErrProtocol
			case errors.Is(err, os.ErrDeadlineExceeded) && fromCtx:
				return contextError(context.DeadlineExceeded)
			case errors.Is(err, os.ErrDeadlineExceeded):
				return ErrTimeout
			case errors.Is(err, syscall.ECONNREFUSED):
				return ErrNoAgent
			}
			return err
		}
		msgid, body, ok := parseFrame(w.buf[:n])
		if !ok || msgid != want {
			continue
		}
		match, err := accept(body)
		if err != nil {
			undecodable = true
			continue
		}
		if match {
			return nil
		}
	}
}

// send writes one datagram; see sendAttempts for the retries.
func (w *worker) send(req []byte) error {
	for i := 0; i < sendAttempts; i++ {
		_, err := w.conn.Write(req)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return err
		}
	}
	return ErrNoAgent
}

// drain drops stale answers (of requests that timed out: a get_route
// answer carries no seq, so an old one would pass for the new one) and
// pending ICMP errors (of earlier reports), so what we read next belongs to
// the request we are about to send. Caller holds w.turn.
func (w *worker) drain() error {
	// RawConn.Read refuses to run once the read deadline has passed, and
	// the last request may have left one behind.
	if err := w.conn.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	return w.raw.Read(func(fd uintptr) bool {
		// The socket is non-blocking (Go's poller), so an empty queue
		// gives EAGAIN at once.
		for i := 0; i < drainMax; i++ {
			_, _, err := syscall.Recvfrom(int(fd), w.buf, 0)
			if err != nil && err != syscall.ECONNREFUSED && err != syscall.EINTR {
				break // EAGAIN: empty; anything else shows up on send/read
			}
		}
		return true // never wait for readability: there is nothing to wait for
	})
}

package lars

// Tests against a real lars-agent: TestMain starts one from
// $LARS_BUILD_DIR/bin/lars-agent with the plugins of $LARS_BUILD_DIR/plugins
// on free loopback ports, and stops it after the tests. Without
// LARS_BUILD_DIR those tests skip (the codec and fake-agent tests still run).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const agentWorkers = 3

// The agent every agent test talks to, set by TestMain.
var agent struct {
	skip     string // why agent tests skip; "" = the agent runs
	basePort uint16
	stats    string // host:port of /metrics
	dir      string // config, logs, report_log output
	cmd      *exec.Cmd
	exited   chan struct{}
}

// Static routes of the test agent, one module per test so tests do not
// see each other's reports or first-request NOEXIST.
const agentConf = `agent: {
    listen = "127.0.0.1";
    udp_base_port = @PORT@;
    workers = @WORKERS@;
    cache_dir = "";
    plugin_dir = "@PLUGINS@";
    stats_listen = "127.0.0.1:@STATS@";
    log_level = "info";
};
# A node's statistics window (what report_log shows) lasts the whole run.
policy: { plugin = "lb_lars"; idle_timeout = 3600; };
policies = ( { modid = 3; cmdid = 1; plugin = "lb_ring"; } );
dns: {
    plugin = "dns_static";
    routes = (
        { modid = 1; cmdid = 1; hosts = ( "127.0.0.1:9001", "127.0.0.1:9002" ); },
        { modid = 2; cmdid = 1; hosts = (
            { addr = "127.0.0.1:9001"; weight = 200; zone = "az1"; tags = ( "canary=1" ); },
            "127.0.0.1:9002",
            "[::1]:9003" ); },
        { modid = 3; cmdid = 1; hosts = ( "127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103",
            "127.0.0.1:9104", "127.0.0.1:9105", "127.0.0.1:9106" ); },
@MODULE4@
        { modid = 5; cmdid = 1; hosts = ( "127.0.0.1:9301" ); },
        { modid = 6; cmdid = 1; hosts = ( "127.0.0.1:9401" ); },
        { modid = -7; cmdid = 2; hosts = ( "127.0.0.1:9501" ); }
    );
};
reporter: { plugin = "report_log"; report_interval = 0.2; path = "@DIR@/report.log"; };
`

// Module 4/N is new to the agent for each run of
// TestAgentNoSuchModuleThenRegInit (go test -count=N runs tests again
// against the same agent), up to fresh4 runs.
const fresh4 = 20

var runs4 int32

func module4Routes() string {
	var b strings.Builder
	for i := 1; i <= fresh4; i++ {
		fmt.Fprintf(&b, "        { modid = 4; cmdid = %d; hosts = ( \"127.0.0.1:9201\" ); },\n", i)
	}
	return b.String()
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	build := os.Getenv("LARS_BUILD_DIR")
	if build == "" {
		agent.skip = "LARS_BUILD_DIR is not set: set it to a Lars build directory " +
			"(with bin/lars-agent and plugins/) to run the tests against a real agent"
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "lars-go-test.")
	if err != nil {
		fmt.Fprintln(os.Stderr, "lars tests:", err)
		return 1
	}
	agent.dir = dir
	if err := startAgent(build); err != nil {
		fmt.Fprintln(os.Stderr, "lars tests: cannot start lars-agent:", err)
		dumpFile(filepath.Join(dir, "stderr"))
		stopAgent()
		os.RemoveAll(dir)
		return 1
	}
	rc := m.Run()
	if err := stopAgent(); err != nil {
		fmt.Fprintln(os.Stderr, "lars tests:", err)
		rc = 1
	}
	if rc != 0 {
		dumpFile(filepath.Join(dir, "stderr"))
	}
	os.RemoveAll(dir)
	return rc
}

func dumpFile(path string) {
	b, _ := os.ReadFile(path)
	fmt.Fprintf(os.Stderr, "---- %s ----\n%s---- end ----\n", path, b)
}

// freeUDPPorts finds n consecutive free UDP ports on 127.0.0.1, below the
// kernel's ephemeral range (32768+), so client sockets do not grab them
// between our check and the agent's bind.
func freeUDPPorts(n int) (uint16, error) {
	for attempt := 0; attempt < 500; attempt++ {
		base := 12000 + rand.Intn(32000-12000-n)
		if portsFree(base, n) {
			return uint16(base), nil
		}
	}
	return 0, errors.New("no free consecutive UDP ports")
}

func portsFree(base, n int) bool {
	var open []io.Closer
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: base + i})
		if err != nil {
			return false
		}
		open = append(open, c)
	}
	return true
}

func freeTCPPort() (uint16, error) {
	for attempt := 0; attempt < 500; attempt++ {
		port := 12000 + rand.Intn(20000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			l.Close()
			return uint16(port), nil
		}
	}
	return 0, errors.New("no free TCP port")
}

func startAgent(build string) error {
	rand.Seed(time.Now().UnixNano() ^ int64(os.Getpid()))
	bin := filepath.Join(build, "bin", "lars-agent")
	var lastErr error
	// A port taken between our check and the agent's bind is worth
	// another try; anything else is not.
	for attempt := 0; attempt < 4; attempt++ {
		base, err := freeUDPPorts(agentWorkers)
		if err != nil {
			return err
		}
		stats, err := freeTCPPort()
		if err != nil {
			return err
		}
		conf := strings.NewReplacer(
			"@PORT@", strconv.Itoa(int(base)),
			"@WORKERS@", strconv.Itoa(agentWorkers),
			"@PLUGINS@", filepath.Join(build, "plugins"),
			"@STATS@", strconv.Itoa(int(stats)),
			"@DIR@", agent.dir,
			"@MODULE4@", module4Routes(),
		).Replace(agentConf)
		confPath := filepath.Join(agent.dir, "agent.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			return err
		}
		agent.basePort = base
		agent.stats = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(stats)))
		lastErr = spawnAgent(bin, confPath)
		if lastErr == nil {
			return nil
		}
		errText, _ := os.ReadFile(filepath.Join(agent.dir, "stderr"))
		if !strings.Contains(string(errText), "cannot bind") {
			return lastErr
		}
	}
	return lastErr
}

func spawnAgent(bin, conf string) error {
	stderr, err := os.Create(filepath.Join(agent.dir, "stderr"))
	if err != nil {
		return err
	}
	defer stderr.Close()
	cmd := exec.Command(bin, "-f", "-c", conf)
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	// Dies with the test binary: a crashed or killed test leaves no agent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	agent.cmd = cmd
	agent.exited = make(chan struct{})
	go func() {
		cmd.Wait()
		close(agent.exited)
	}()
	c, err := NewClient(Options{BasePort: agent.basePort, Workers: agentWorkers, Timeout: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-agent.exited:
			agent.cmd = nil
			return fmt.Errorf("lars-agent exited at start: %v", cmd.ProcessState)
		default:
		}
		// A module no test uses: its NOEXIST answer proves a worker runs.
		_, err := c.GetRoute(context.Background(), 2000000000, 1)
		if errors.Is(err, ErrNoSuchModule) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("lars-agent did not answer within 5 s")
}

// stopAgent SIGTERMs the agent and waits for it to exit, bounded.
func stopAgent() error {
	if agent.cmd == nil {
		return nil
	}
	cmd := agent.cmd
	agent.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-agent.exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-agent.exited
		return errors.New("lars-agent did not exit within 5 s of SIGTERM: killed")
	}
	if !cmd.ProcessState.Success() {
		return fmt.Errorf("lars-agent exited with %v after SIGTERM", cmd.ProcessState)
	}
	return nil
}

// agentClient is a client of the test agent; the test skips without one.
func agentClient(t *testing.T) *Client {
	t.Helper()
	if agent.skip != "" {
		t.Skip(agent.skip)
	}
	c, err := NewClient(Options{AgentIP: "127.0.0.1", BasePort: agent.basePort, Workers: agentWorkers,
		Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func regInit(t *testing.T, c *Client, modid, cmdid int32) {
	t.Helper()
	if err := c.RegInit(context.Background(), modid, cmdid); err != nil {
		t.Fatalf("RegInit(%d, %d): %v", modid, cmdid, err)
	}
}

func TestAgentGetHost(t *testing.T) {
	c := agentClient(t)
	regInit(t, c, 1, 1)
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		h, err := c.GetHost(context.Background(), 1, 1)
		if err != nil {
			t.Fatalf("GetHost: %v", err)
		}
		seen[h.String()] = true
	}
	for addr := range seen {
		if addr != "127.0.0.1:9001" && addr != "127.0.0.1:9002" {
			t.Errorf("GetHost gave %s, not a node of the static route", addr)
		}
	}
	if len(seen) != 2 {
		t.Errorf("GetHost over 20 calls gave %v, want both nodes", seen)
	}
}

// A negative modid lands on the worker the agent computes (Euclidean mod):
// a plain Go % would pick a wrong port or panic.
func TestAgentNegativeModid(t *testing.T) {
	c := agentClient(t)
	regInit(t, c, -7, 2)
	h, err := c.GetHost(context.Background(), -7, 2)
	if err != nil {
		t.Fatalf("GetHost(-7, 2): %v", err)
	}
	if h.String() != "127.0.0.1:9501" {
		t.Errorf("GetHost(-7, 2) = %s, want 127.0.0.1:9501", h)
	}
}

func TestAgentGetHostKey(t *testing.T) {
	c := agentClient(t)
	regInit(t, c, 3, 1)
	ctx := context.Background()
	first, err := c.GetHostKey(ctx, 3, 1, 12345)
	if err != nil {
		t.Fatalf("GetHostKey: %v", err)
	}
	for i := 0; i < 100; i++ {
		h, err := c.GetHostKey(ctx, 3, 1, 12345)
		if err != nil {
			t.Fatalf("GetHostKey #%d: %v", i, err)
		}
		if h.String() != first.String() {
			t.Fatalf("GetHostKey #%d with the same key: %s, first %s", i, h, first)
		}
	}
	// Different keys must reach different nodes, or the key is not used.
	spread := map[string]bool{}
	for key := uint64(1); key <= 64; key++ {
		h, err := c.GetHostKey(ctx, 3, 1, key*0x9e3779b97f4a7c15)
		if err != nil {
			t.Fatalf("GetHostKey(key %d): %v", key, err)
		}
		spread[h.String()] = true
	}
	if len(spread) < 2 {
		t.Errorf("64 keys all gave %v", spread)
	}
}

func TestAgentGetRoute(t *testing.T) {
	c := agentClient(t)
	regInit(t, c, 2, 1)
	hosts, err := c.GetRoute(context.Background(), 2, 1)
	if err != nil {
		t.Fatalf("GetRoute: %v", err)
	}
	byAddr := map[string]Host{}
	for _, h := range hosts {
		byAddr[h.String()] = h
	}
	if len(hosts) != 3 || len(byAddr) != 3 {
		t.Fatalf("GetRoute gave %v, want 3 nodes", hosts)
	}
	h1, ok := byAddr["127.0.0.1:9001"]
	if !ok || h1.Weight != 200 || h1.Zone != "az1" || len(h1.Tags) != 1 || h1.Tags[0] != "canary=1" ||
		h1.Draining {
		t.Errorf("127.0.0.1:9001 = %+v, want weight 200, zone az1, tags [canary=1]", h1)
	}
	h2, ok := byAddr["127.0.0.1:9002"]
	if !ok || h2.Weight != 100 || h2.Zone != "" || len(h2.Tags) != 0 {
		t.Errorf("127.0.0.1:9002 = %+v, want weight 100 (default), no zone, no tags", h2)
	}
	h3, ok := byAddr["[::1]:9003"]
	if !ok || !h3.IP.Equal(net.IPv6loopback) || h3.IP.To4() != nil {
		t.Errorf("no IPv6 node [::1]:9003 in %v", hosts)
	}
}

func TestAgentNoSuchModuleThenRegInit(t *testing.T) {
	c := agentClient(t)
	ctx := context.Background()
	runs4++
	if runs4 > fresh4 {
		t.Skipf("module 4/N has no fresh cmdid left for run %d", runs4)
	}
	cmdid := runs4
	// Module 4/cmdid exists but nobody asked for it yet: the first answer
	// is RET_NOEXIST while the agent pulls the route.
	if _, err := c.GetHost(ctx, 4, cmdid); !errors.Is(err, ErrNoSuchModule) {
		t.Fatalf("first GetHost(4, %d) = %v, want ErrNoSuchModule", cmdid, err)
	}
	regInit(t, c, 4, cmdid)
	h, err := c.GetHost(ctx, 4, cmdid)
	if err != nil || h.String() != "127.0.0.1:9201" {
		t.Fatalf("GetHost(4, %d) after RegInit = %v, %v; want 127.0.0.1:9201", cmdid, h, err)
	}
	// A module the dns side does not know stays unknown.
	start := time.Now()
	if err := c.RegInit(ctx, 99, 9); !errors.Is(err, ErrNoSuchModule) {
		t.Errorf("RegInit(99, 9) = %v, want ErrNoSuchModule", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("RegInit of an unknown module took %v", d)
	}
	if _, err := c.GetRoute(ctx, 99, 9); !errors.Is(err, ErrNoSuchModule) {
		t.Errorf("GetRoute(99, 9) = %v, want ErrNoSuchModule", err)
	}
	if _, err := c.GetHost(ctx, 99, 9); !errors.Is(err, ErrNoSuchModule) {
		t.Errorf("GetHost(99, 9) = %v, want ErrNoSuchModule", err)
	}
}

// reportCount reads lars_requests_total{type="report"} from the agent's
// /metrics.
func reportCount(t *testing.T) int {
	t.Helper()
	hc := http.Client{Timeout: 2 * time.Second}
	rsp, err := hc.Get("http://" + agent.stats + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer rsp.Body.Close()
	if rsp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", rsp.Status)
	}
	const name = `lars_requests_total{type="report"} `
	sc := bufio.NewScanner(rsp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), name) {
			v := strings.TrimPrefix(sc.Text(), name)
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("/metrics: %q: %v", sc.Text(), err)
			}
			return n
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

func TestAgentReport(t *testing.T) {
	c := agentClient(t)
	regInit(t, c, 5, 1)
	h, err := c.GetHost(context.Background(), 5, 1)
	if err != nil {
		t.Fatalf("GetHost: %v", err)
	}
	before := reportCount(t)
	const n = 7
	for i := 0; i < n; i++ {
		if err := c.Report(5, 1, h, i%2 == 0, time.Millisecond); err != nil {
			t.Fatalf("Report: %v", err)
		}
	}
	// Reports have no answer: the counter tells when they arrived.
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := reportCount(t) - before
		if got == n {
			break
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("the agent counted %d reports, want %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nodeStats reads one node's succ/err from the last line report_log wrote
// for the module: the counts of the node's statistics window so far.
func nodeStats(t *testing.T, modid, cmdid int32, node string) (succ, fail int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(agent.dir, "report.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var batch struct {
			Modid, Cmdid int32
			Nodes        []struct {
				Node      string
				Succ, Err int
			}
		}
		if line == "" || json.Unmarshal([]byte(line), &batch) != nil ||
			batch.Modid != modid || batch.Cmdid != cmdid {
			continue
		}
		for _, n := range batch.Nodes {
			if n.Node == node {
				succ, fail = n.Succ, n.Err
			}
		}
	}
	return succ, fail
}

func TestAgentCall(t *testing.T) {
	c := agentClient(t)
	regInit(t, c, 6, 1)
	ctx := context.Background()
	boom := errors.New("boom")
	// Counts of earlier runs (go test -count=N) stay in the log.
	succ0, fail0 := nodeStats(t, 6, 1, "127.0.0.1:9401")
	for i := 0; i < 3; i++ {
		var got Host
		err := c.Call(ctx, 6, 1, func(h Host) error { got = h; return nil })
		if err != nil || got.String() != "127.0.0.1:9401" {
			t.Fatalf("Call = %v with host %v", err, got)
		}
	}
	for i := 0; i < 2; i++ {
		if err := c.Call(ctx, 6, 1, func(Host) error { return boom }); err != boom {
			t.Fatalf("Call returned %v, want fn's error", err)
		}
	}
	// report_log writes the node's statistics every 0.2 s.
	deadline := time.Now().Add(5 * time.Second)
	for {
		succ, fail := nodeStats(t, 6, 1, "127.0.0.1:9401")
		succ, fail = succ-succ0, fail-fail0
		if succ == 3 && fail == 2 {
			break
		}
		if succ > 3 || fail > 2 || time.Now().After(deadline) {
			t.Fatalf("the reporter saw succ %d, err %d; want 3 and 2", succ, fail)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A failed GetHost does not run fn.
	ran := false
	if err := c.Call(ctx, 99, 8, func(Host) error { ran = true; return nil }); !errors.Is(err, ErrNoSuchModule) || ran {
		t.Errorf("Call of an unknown module = %v (fn ran: %v), want ErrNoSuchModule", err, ran)
	}
}

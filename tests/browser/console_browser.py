#!/usr/bin/python3
"""console_browser: lars-dns's web console in a real browser (issue 14, item 3).

Starts real processes on 127.0.0.1 over one SQLite store: lars-dns (console
on, a token), lars-reporter, and a lars-agent whose dns_lars and report_lars
point at them. Headless Chromium, driven over the DevTools protocol on a pipe
(fd 3: commands in, fd 4: events out, JSON messages ended by NUL; Python's
standard library only), then:

  1. loads /, is sent to the login form, logs in with the token;
  2. adds node 127.0.0.1:9077 to module 77/1 through the page's form;
  3. checks that the agent serves it (`lars get-route 77 1`);
  4. reports calls (`lars simulate`) and waits for the node's statistics and
     its last-hour chart (ServerCallHistory, written by lars-reporter);
  5. drains the node with the page's button and checks the agent sees it;
  6. checks that requests without the token get 401 (and the page a
     redirect), that the page loaded nothing from elsewhere and raised no
     error (CSP violations included), and the console's counters;
  7. writes a screenshot (Page.captureScreenshot) to --out.

Exit 0 when all holds, 1 on the first failure (with the daemons' logs),
77 (ctest SKIP_RETURN_CODE) only when Chromium is not installed.
"""

import argparse
import base64
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

TOKEN = "console-browser-test-token-0123456789"
MODID, CMDID, NODE = 77, 1, "127.0.0.1:9077"
SKIP = 77


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, fn, timeout=15.0, every=0.1):
    """Polls fn until it returns a true value; that value, or Failure."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (OSError, Failure) as e:  # not up yet
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise Failure("%s: not within %.0f s (last: %r)" % (what, timeout, last))


# ---------------------------------------------------------------- HTTP


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def http(url, data=None, headers=None):
    """(status, headers, body text) without following redirects."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with OPENER.open(req, timeout=5) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def metric(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return int(line.split()[-1])
    raise Failure("metric %s missing" % series)


# ---------------------------------------------------------------- Chromium


class Browser:
    """Chromium on --remote-debugging-pipe: one page, flat sessions."""

    def __init__(self, chromium, profile, log):
        cmd_r, self.cmd_w = os.pipe()
        self.ev_r, ev_w = os.pipe()

        def child_fds():
            # The pipe ends become the child's fd 3 and 4 (dup2 clears
            # close-on-exec); high copies first, in case they are 3 or 4.
            a, b = os.dup(cmd_r), os.dup(ev_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                chromium,
                "--headless=new",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--metrics-recording-only",
                "--password-store=basic",
                "--use-mock-keychain",
                "--hide-scrollbars",
                "--mute-audio",
                "--window-size=1280,1000",
                "--user-data-dir=" + profile,
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            close_fds=False,
            preexec_fn=child_fds,
        )
        os.close(cmd_r)
        os.close(ev_w)
        self.next_id = 0
        self.replies = {}
        self.events = queue.Queue()
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.session = None

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self.ev_r, 65536)
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self.cond:
                        self.replies[msg["id"]] = msg
                        self.cond.notify_all()
                else:
                    self.events.put(msg)
        with self.cond:
            self.replies[-1] = {"error": {"message": "chromium closed the pipe"}}
            self.cond.notify_all()

    def call(self, method, params=None, session=True, timeout=20):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self.cond:
            while mid not in self.replies and -1 not in self.replies:
                left = deadline - time.monotonic()
                check(left > 0, "chromium: no answer to %s within %d s" % (method, timeout))
                self.cond.wait(left)
            reply = self.replies.pop(mid, None) or self.replies[-1]
        if "error" in reply:
            raise Failure("chromium: %s: %s" % (method, reply["error"].get("message")))
        return reply.get("result", {})

    def open_page(self):
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False
        )
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(domain + ".enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
        )

    def js(self, expression):
        """The value of expression in the page (awaited when a promise)."""
        r = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in r:
            raise Failure("page: %s: %s" % (expression, r["exceptionDetails"].get("text")))
        return r.get("result", {}).get("value")

    def drain_events(self):
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def close(self):
        try:
            self.call("Browser.close", session=False, timeout=5)
        except Failure:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.cmd_w)


# ---------------------------------------------------------------- daemons


class Daemon:
    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env
        )

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def tail(self, lines=30):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def lars_cli(bin_dir, agent_port, *args):
    r = subprocess.run(
        [os.path.join(bin_dir, "lars"), "-p", str(agent_port), "-w", "1", "-t", "1000", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return r.returncode, r.stdout + r.stderr


# ---------------------------------------------------------------- the test


def run(args, tmp, daemons, browser_box):
    store = 'store = { backend = "sqlite"; path = "%s/lars.db"; };\n' % tmp
    dns_port, console_port, stats_port = free_port(), free_port(), free_port()
    reporter_port = free_port()
    agent_port = free_port(socket.SOCK_DGRAM)
    base = "http://127.0.0.1:%d" % console_port

    write(
        tmp + "/lars-dns.conf",
        'listen = "127.0.0.1:%d";\npoll_interval = 0.2;\nstats_listen = "127.0.0.1:%d";\n'
        'console_listen = "127.0.0.1:%d";\nconsole_token = "%s";\n%s'
        % (dns_port, stats_port, console_port, TOKEN, store),
    )
    write(
        tmp + "/lars-reporter.conf",
        'listen = "127.0.0.1:%d";\nthreads = 1;\n%s' % (reporter_port, store),
    )
    write(
        tmp + "/lars-agent.conf",
        'agent: { listen = "127.0.0.1"; udp_base_port = %d; workers = 1;\n'
        '         local_ip = "127.0.0.1"; cache_dir = "%s/cache"; route_guard = 0; };\n'
        'policy: { plugin = "lb_lars"; idle_timeout = 300; overload_timeout = 300; };\n'
        'dns: { plugin = "dns_lars"; servers = ( "127.0.0.1:%d" );\n'
        "       backoff_min_ms = 50; backoff_max_ms = 300; };\n"
        'reporter: { plugin = "report_lars"; servers = ( "127.0.0.1:%d" ); report_interval = 1;\n'
        "            backoff_min_ms = 50; backoff_max_ms = 300; };\n"
        % (agent_port, tmp, dns_port, reporter_port),
    )
    os.makedirs(tmp + "/cache", mode=0o700)
    b = args.bin_dir
    daemons.append(
        Daemon("lars-dns", [b + "/lars-dns", "-f", "-c", tmp + "/lars-dns.conf"], tmp + "/dns.log")
    )
    daemons.append(
        Daemon(
            "lars-reporter",
            [b + "/lars-reporter", "-f", "-c", tmp + "/lars-reporter.conf"],
            tmp + "/reporter.log",
        )
    )
    wait_for("lars-dns's console answers", lambda: http(base + "/login")[0] == 200)
    env = dict(os.environ, LARS_PLUGIN_DIR=args.plugin_dir)
    daemons.append(
        Daemon(
            "lars-agent",
            [b + "/lars-agent", "-f", "-c", tmp + "/lars-agent.conf"],
            tmp + "/agent.log",
            env=env,
        )
    )
    # The agent serves once its socket answers (module unknown: exit 3).
    wait_for("lars-agent answers", lambda: lars_cli(b, agent_port, "get-route", "1", "1")[0] in (0, 3))

    # ---- without the token: 401 (API), redirect (pages)
    status, headers, body = http(base + "/api/nodes")
    check(status == 401, "GET /api/nodes without a token: %d %s" % (status, body))
    check("Bearer" in (headers.get("WWW-Authenticate") or ""), "401 without WWW-Authenticate")
    check(
        "default-src 'self'" in (headers.get("Content-Security-Policy") or ""),
        "no Content-Security-Policy on the console's answers",
    )
    form = urllib.parse.urlencode({"modid": MODID, "cmdid": CMDID, "node": NODE}).encode()
    status, _, body = http(base + "/api/nodes/add", data=form)
    check(status == 401, "POST /api/nodes/add without a token: %d %s" % (status, body))
    status, _, _ = http(base + "/api/nodes", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
    check(status == 401, "a wrong token: %d, not 401" % status)
    status, headers, _ = http(base + "/")
    check(status == 303 and headers.get("Location") == "/login", "GET / without a session: %d" % status)
    status, _, body = http(
        base + "/api/nodes/add",
        data=urllib.parse.urlencode({"modid": MODID, "cmdid": CMDID, "node": "999.1.1.1:80"}).encode(),
        headers={"Authorization": "Bearer " + TOKEN},
    )
    check(status == 400 and "node must be" in body, "a bad node address: %d %s" % (status, body))

    # ---- the browser
    chromium_log = open(tmp + "/chromium.log", "w")
    browser = Browser(args.chromium, tmp + "/profile", chromium_log)
    browser_box.append(browser)
    browser.open_page()
    browser.call("Page.navigate", {"url": base + "/"})
    wait_for(
        "the login form after loading /",
        lambda: browser.js("location.pathname === '/login' && !!document.getElementById('token')"),
    )
    browser.js(
        "document.getElementById('token').value = %s;"
        "document.getElementById('login-submit').click(); true" % json.dumps(TOKEN)
    )
    wait_for(
        "the console after logging in",
        lambda: browser.js(
            # console.js has run and rendered /api/nodes once (its form
            # handler is in place).
            "location.pathname === '/' && document.getElementById('version').textContent !== ''"
        ),
    )
    cookie = browser.call("Network.getCookies", {"urls": [base + "/"]})["cookies"]
    check(
        any(c["name"] == "lars_console" and c["httpOnly"] and c["sameSite"] == "Strict" for c in cookie),
        "the session cookie is not HttpOnly + SameSite=Strict: %r" % cookie,
    )

    # ---- add through the form
    browser.js(
        "(() => { const v = {modid: '%d', cmdid: '%d', node: '%s', weight: '30', zone: 'dc7',"
        " tags: 'env=test'};"
        " for (const [k, x] of Object.entries(v)) document.getElementById('add-' + k).value = x;"
        " document.getElementById('add-submit').click(); return true; })()" % (MODID, CMDID, NODE)
    )
    row = "document.querySelector('table[data-module=\"%d/%d\"] tr[data-node=\"%s\"]')" % (
        MODID,
        CMDID,
        NODE,
    )
    wait_for("the added node's row in the page", lambda: browser.js("!!" + row))
    message = browser.js("document.getElementById('message').textContent")
    check("added" in message, "the page says %r after adding" % message)

    # ---- the agent serves it
    def agent_has(want):
        code, out = lars_cli(b, agent_port, "get-route", str(MODID), str(CMDID))
        return code == 0 and NODE in out and want in out and out

    out = wait_for("the agent serving the added node", lambda: agent_has("weight=30"), timeout=15)
    check("zone=dc7" in out and "env=test" in out, "the agent's route lacks the metadata: %r" % out)

    # ---- calls reported: statistics and the chart
    code, out = lars_cli(b, agent_port, "simulate", str(MODID), str(CMDID), "--count", "200",
                         "--err-rate", "0.05", "--seed", "7")
    check(code == 0, "lars simulate: %d %s" % (code, out))
    wait_for(
        "the node's statistics in the page",
        lambda: browser.js(row + ".cells[5].textContent !== ''"),
        timeout=20,
    )
    browser.js(
        "Array.from(%s.querySelectorAll('button')).find(b => b.textContent === 'chart').click(); true"
        % row
    )
    totals = wait_for(
        "the chart's totals",
        lambda: (lambda t: t if t and "last hour: 0 successes" not in t else None)(
            browser.js("document.getElementById('chart-totals').textContent")
        ),
        timeout=20,
    )
    check("errors" in totals, "chart totals %r" % totals)
    status, _, body = http(
        base + "/api/history?modid=%d&cmdid=%d&node=%s" % (MODID, CMDID, NODE),
        headers={"Authorization": "Bearer " + TOKEN},
    )
    hist = json.loads(body)
    check(status == 200 and hist["nodes"], "GET /api/history: %d %s" % (status, body))
    succ = sum(p[1] for p in hist["nodes"][0]["points"])
    err = sum(p[2] for p in hist["nodes"][0]["points"])
    check(succ + err == 200, "history holds %d + %d calls, simulate made 200" % (succ, err))

    # ---- drain with the page's button: the agent sees it
    browser.js(
        "Array.from(%s.querySelectorAll('button')).find(b => b.textContent === 'drain').click(); true"
        % row
    )
    wait_for("the agent seeing the drain", lambda: agent_has("draining=yes"), timeout=15)
    wait_for("the page showing the drain", lambda: browser.js(row + ".cells[4].textContent === 'draining'"))

    # ---- the screenshot
    time.sleep(0.3)  # the last refresh painted
    shot = browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    png = base64.b64decode(shot["data"])
    check(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000, "screenshot is not a PNG")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(png)

    # ---- what the page did: nothing from elsewhere, no errors
    events = browser.drain_events()
    urls = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    foreign = [u for u in urls if not u.startswith(base + "/") and not u.startswith("data:")]
    check(urls and not foreign, "the page loaded from elsewhere: %r" % foreign)
    errors = [
        e["params"]
        for e in events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
            and "401" not in e["params"]["entry"].get("text", ""))
    ]
    check(not errors, "the page reported errors: %r" % errors[:3])

    # ---- counters
    status, _, text = http("http://127.0.0.1:%d/metrics" % stats_port)
    check(status == 200, "lars-dns /metrics: %d" % status)
    unauthorized = metric(text, 'lars_dns_console_requests_total{result="unauthorized"}')
    check(unauthorized >= 4, "unauthorized requests counted: %d, want >= 4" % unauthorized)
    check(metric(text, 'lars_dns_console_requests_total{result="bad_request"}') >= 1, "bad_request")
    check(metric(text, "lars_dns_console_changes_total") == 2, "changes: want add + drain")
    print(
        "console_browser: logged in, added %s to %d/%d through the form, the agent served it; "
        "%d successes + %d errors in the chart; drained; %d requests without the token refused; "
        "screenshot %s (%d bytes)" % (NODE, MODID, CMDID, succ, err, unauthorized, args.out, len(png))
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", required=True, help="lars-dns, lars-reporter, lars-agent, lars")
    p.add_argument("--plugin-dir", required=True, help="the build tree's plugins (LARS_PLUGIN_DIR)")
    p.add_argument("--out", required=True, help="where the screenshot goes")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = p.parse_args()
    if not os.access(args.chromium, os.X_OK):
        print("console_browser: SKIP: no chromium at %s (apt-get install chromium)" % args.chromium)
        return SKIP
    tmp = tempfile.mkdtemp(prefix="lars-console-browser.")
    daemons, browser_box = [], []
    rc = 0
    try:
        run(args, tmp, daemons, browser_box)
    except Failure as e:
        rc = 1
        print("console_browser: FAILED: %s" % e, file=sys.stderr)
    finally:
        for browser in browser_box:
            browser.close()
        for d in reversed(daemons):
            code = d.stop()
            if code != 0:
                print("console_browser: %s exited with %s" % (d.name, code), file=sys.stderr)
                rc = 1
            if rc:
                print("---- %s log (%s):\n%s" % (d.name, d.log_path, d.tail()), file=sys.stderr)
        if args.keep or rc:
            print("console_browser: files kept in %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())

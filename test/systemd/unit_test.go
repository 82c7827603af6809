//go:build systemd

// Package systemd checks packaging/systemd/rwagent.service with Debian's
// systemd-analyze (verify, and the security score the README states) and
// runs the built binary the way the unit does, with a notify socket of the
// test's own, to check the sd_notify messages a Type=notify unit needs,
// SIGHUP and SIGTERM.
package systemd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	shippedUnit = "../../packaging/systemd/rwagent.service"
	shippedBin  = "/usr/local/bin/rwagent"
	// maxExposure is the bound on `systemd-analyze security`.
	maxExposure = 2.0
)

// binary returns $RWAGENT_BIN, or builds rwagent into a temporary directory.
func binary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("RWAGENT_BIN"); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	out := filepath.Join(t.TempDir(), "rwagent")
	cmd := exec.Command("go", "build", "-o", out, "github.com/rwagent/rwagent/cmd/rwagent")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build rwagent: %v", err)
	}
	return out
}

// unitCopy writes the shipped unit into a temporary directory with its
// binary path pointing at bin, which verify wants to exist.
func unitCopy(t *testing.T, bin string) string {
	t.Helper()
	b, err := os.ReadFile(shippedUnit)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("ExecStart="+shippedBin+" ")) {
		t.Fatalf("the shipped unit's ExecStart is not %s", shippedBin)
	}
	path := filepath.Join(t.TempDir(), "rwagent.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(b, []byte(shippedBin), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func analyze(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemd-analyze", args...).CombinedOutput()
	return string(out), err
}

func TestUnitVerifies(t *testing.T) {
	out, err := analyze(t, "verify", "--man=no", unitCopy(t, binary(t)))
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUnitSecurity checks the exposure score is at most maxExposure and is
// the one the README states.
func TestUnitSecurity(t *testing.T) {
	unit := unitCopy(t, binary(t))
	threshold := strconv.Itoa(int(maxExposure * 10)) // tenths
	out, err := analyze(t, "security", "--offline=yes", "--threshold="+threshold, unit)
	if err != nil {
		t.Errorf("systemd-analyze security --threshold=%s: %v", threshold, err)
	}
	m := regexp.MustCompile(`Overall exposure level for rwagent\.service: (\d+\.\d)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(m[1], 64)
	if score > maxExposure {
		t.Errorf("exposure %.1f, want at most %.1f:\n%s", score, maxExposure, out)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := "`systemd-analyze security` scores it " + m[1]; !bytes.Contains(readme, []byte(want)) {
		t.Errorf("README does not say %q", want)
	}
}

// unitSettings reads the [Service] section: key → values in order, with
// continued lines joined.
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(shippedUnit)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	set := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("unit line %q has no '='", line)
			}
			set[k] = append(set[k], strings.Join(strings.Fields(v), " "))
		}
	}
	return set
}

// TestUnitShape checks the settings the issue asks for and that the
// storage path is the state directory systemd makes writable.
func TestUnitShape(t *testing.T) {
	set := unitSettings(t)
	for key, want := range map[string]string{
		"Type":           "notify",
		"ExecReload":     "/bin/kill -HUP $MAINPID",
		"DynamicUser":    "yes",
		"StateDirectory": "rwagent",
		"ProtectSystem":  "strict",
		"ExecStartPre":   shippedBin + " check-config --check-credentials /etc/rwagent/rwagent.yaml",
	} {
		if got := set[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	if len(set["WatchdogSec"]) != 1 || set["WatchdogSec"][0] == "0" {
		t.Errorf("WatchdogSec=%q, want a period", set["WatchdogSec"])
	}
	if len(set["EnvironmentFile"]) != 1 {
		t.Errorf("EnvironmentFile=%q, want one file for the AWS settings", set["EnvironmentFile"])
	}
	start := strings.Join(set["ExecStart"], " ")
	if !strings.Contains(start, "--storage.path=/var/lib/"+strings.Join(set["StateDirectory"], "")+" ") {
		t.Errorf("ExecStart %q does not keep the WAL in the StateDirectory", start)
	}
	if !strings.Contains(start, "--web.listen-address=127.0.0.1:") {
		t.Errorf("ExecStart %q does not listen on 127.0.0.1 only", start)
	}
}

// notifySocket is what systemd opens for a Type=notify unit. It records
// each datagram with its arrival time.
type notifySocket struct {
	path string
	conn *net.UnixConn
	msgs chan message
	done chan struct{}
}

type message struct {
	text string
	at   time.Time
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &notifySocket{path: path, conn: c, msgs: make(chan message, 1024), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(s.msgs)
				return
			}
			s.msgs <- message{string(buf[:n]), time.Now()}
		}
	}()
	t.Cleanup(func() { c.Close(); <-s.done })
	return s
}

// next returns the next message that is not WATCHDOG=1, appending the
// watchdog pings' times to pings; it fails after 60s.
func (s *notifySocket) next(t *testing.T, pings *[]time.Time) message {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				t.Fatal("notify socket closed")
			}
			if m.text == "WATCHDOG=1\n" {
				*pings = append(*pings, m.at)
				continue
			}
			return m
		case <-deadline:
			t.Fatal("no notify message within 60s")
		}
	}
}

// syncBuffer is the process's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func readyCode(addr string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/-/ready")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// targets is the agent's /api/v1/targets.
func targets(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/targets")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestNotifyProcess runs the unit's ExecStart (paths moved into the test's
// directory, its port a free one on 127.0.0.1) with NOTIFY_SOCKET and
// WATCHDOG_USEC set as systemd sets them, then checks: READY=1 once
// /-/ready answers 200; WATCHDOG=1 at half of WATCHDOG_USEC; SIGHUP
// (ExecReload) reloading the file between RELOADING=1 and READY=1; SIGTERM answered with STOPPING=1 and
// a clean exit.
func TestNotifyProcess(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	addr := freePort(t)
	cfg := filepath.Join(dir, "rwagent.yaml")
	if err := os.WriteFile(cfg, []byte("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: self\n    static_configs: [{targets: ['"+addr+"']}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := strings.Fields(strings.Join(unitSettings(t)["ExecStart"], " "))
	if start[0] != shippedBin {
		t.Fatalf("ExecStart runs %s, want %s", start[0], shippedBin)
	}
	var args []string
	for _, a := range start[1:] {
		a = strings.ReplaceAll(a, "/etc/rwagent/rwagent.yaml", cfg)
		a = strings.ReplaceAll(a, "/var/lib/rwagent", filepath.Join(dir, "state"))
		a = regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAllString(a, addr)
		args = append(args, a)
	}

	sock := listenNotify(t)
	const watchdogUsec = 1_000_000 // pings every 500ms
	var stderr syncBuffer
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock.path, "WATCHDOG_USEC="+strconv.Itoa(watchdogUsec))
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited gets Wait's error; gone is closed after it.
	exited, gone := make(chan error, 1), make(chan struct{})
	go func() { exited <- cmd.Wait(); close(gone) }()
	t.Cleanup(func() {
		select {
		case <-gone:
		default:
			cmd.Process.Kill()
			<-gone
		}
		if t.Failed() {
			t.Logf("rwagent's log:\n%s", stderr.String())
		}
	})

	var pings []time.Time
	if m := sock.next(t, &pings); m.text != "STATUS=replaying the WAL\n" {
		t.Errorf("first message %q, want the WAL replay status", m.text)
	}
	ready := sock.next(t, &pings)
	if !strings.HasPrefix(ready.text, "READY=1\n") {
		t.Fatalf("second message %q, want READY=1", ready.text)
	}
	if code := readyCode(addr); code != http.StatusOK {
		t.Errorf("READY=1 sent while /-/ready answers %d", code)
	}

	// ExecReload: a second job added to the file is scraped after SIGHUP,
	// announced with RELOADING=1 (and the monotonic clock) then READY=1.
	if err := os.WriteFile(cfg, []byte("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: self\n    static_configs: [{targets: ['"+addr+"']}]\n"+
		"  - job_name: again\n    static_configs: [{targets: ['"+addr+"']}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if m := sock.next(t, &pings); !strings.HasPrefix(m.text, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("message after SIGHUP %q, want RELOADING=1 with MONOTONIC_USEC", m.text)
	}
	if m := sock.next(t, &pings); m.text != "READY=1\nSTATUS=ready: configuration reloaded\n" {
		t.Errorf("message after the reload %q, want READY=1 saying it reloaded", m.text)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), `"configuration reloaded"`) && !strings.Contains(stderr.String(), "msg=\"configuration reloaded\""); {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP not logged as a reload within 30s")
		}
		select {
		case err := <-exited:
			t.Fatalf("SIGHUP ended the process: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(targets(t, addr), `"scrapePool":"again"`); {
		if time.Now().After(deadline) {
			t.Fatalf("the job added by the reload is not among the targets: %s", targets(t, addr))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Let the watchdog run a few periods after the reload.
	time.Sleep(3 * watchdogUsec * time.Microsecond)
	if code := readyCode(addr); code != http.StatusOK {
		t.Errorf("after SIGHUP /-/ready answers %d", code)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopping := sock.next(t, &pings)
	if !strings.HasPrefix(stopping.text, "STOPPING=1\n") {
		t.Errorf("message after SIGTERM %q, want STOPPING=1", stopping.text)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(90 * time.Second): // the unit's TimeoutStopSec
		t.Fatal("no exit within 90s of SIGTERM")
	}

	// Between READY and STOPPING systemd would have killed the agent had
	// a gap between pings reached WATCHDOG_USEC.
	var running []time.Time
	for _, p := range pings {
		if p.After(ready.at) && p.Before(stopping.at) {
			running = append(running, p)
		}
	}
	if len(running) < 4 {
		t.Fatalf("%d watchdog pings in %v of running, want a ping every %v", len(running), stopping.at.Sub(ready.at), watchdogUsec*time.Microsecond/2)
	}
	prev := ready.at
	for _, p := range append(running, stopping.at) {
		if gap := p.Sub(prev); gap >= watchdogUsec*time.Microsecond {
			t.Errorf("%v without a watchdog ping: systemd would have killed the agent", gap)
		}
		prev = p
	}
	t.Logf("%d watchdog pings while running", len(running))
}

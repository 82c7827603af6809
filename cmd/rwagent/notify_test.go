package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rwagent/rwagent/pkg/sdnotify"
)

// notifySocket is the socket systemd would open for a Type=notify unit.
type notifySocket struct {
	path string
	conn *net.UnixConn
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{path: path, conn: c}
}

// next returns the next datagram that is not a bare WATCHDOG=1, failing
// after 30s.
func (s *notifySocket) next(t *testing.T) string {
	t.Helper()
	buf := make([]byte, 4096)
	for {
		if err := s.conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := s.conn.Read(buf)
		if err != nil {
			t.Fatalf("read notify socket: %v", err)
		}
		if msg := string(buf[:n]); msg != "WATCHDOG=1\n" {
			return msg
		}
	}
}

func readyStatus(t *testing.T, web string) int {
	t.Helper()
	resp, err := http.Get(web + "/-/ready")
	if err != nil {
		t.Fatalf("GET /-/ready: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSystemdNotify runs the agent with a notify socket and checks what a
// Type=notify unit relies on: STATUS while starting, READY=1 only once
// /-/ready answers 200, then STOPPING=1 when it is told to stop, in that
// order, and WATCHDOG=1 meanwhile.
func TestSystemdNotify(t *testing.T) {
	target := serve(t, appRegistry(t))
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "agent.yml")
	cfg := "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: app\n    static_configs: [{targets: ['" +
		strings.TrimPrefix(target.URL, "http://") + "']}]\n"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := listenNotify(t)
	hup := make(chan os.Signal)
	a := launch(t, &agentUnderTest{}, agentOptions{
		ConfigFile:       cfgFile,
		StoragePath:      filepath.Join(dir, "agent"),
		Notifier:         sdnotify.New(sock.path),
		WatchdogInterval: 50 * time.Millisecond,
		HUP:              hup,
	})

	if got := sock.next(t); got != "STATUS=replaying the WAL\n" {
		t.Errorf("first message %q, want the WAL replay status", got)
	}
	got := sock.next(t)
	if !strings.HasPrefix(got, "READY=1\nSTATUS=ready") {
		t.Fatalf("second message %q, want READY=1 with a status", got)
	}
	if code := readyStatus(t, a.web); code != http.StatusOK {
		t.Errorf("READY=1 sent while /-/ready answers %d", code)
	}

	// Watchdog pings come while the agent runs.
	if err := sock.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for range 3 {
		n, err := sock.conn.Read(buf)
		if err != nil {
			t.Fatalf("no watchdog ping: %v", err)
		}
		if msg := string(buf[:n]); msg != "WATCHDOG=1\n" {
			t.Fatalf("message %q while running, want WATCHDOG=1", msg)
		}
	}

	// A SIGHUP reloads: RELOADING=1 with the monotonic clock systemd
	// asks for, then READY=1 once done.
	hup <- syscall.SIGHUP
	if got := sock.next(t); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") || !strings.Contains(got, "STATUS=reloading") {
		t.Errorf("message after SIGHUP %q, want RELOADING=1 with MONOTONIC_USEC and a status", got)
	}
	if got := sock.next(t); got != "READY=1\nSTATUS=ready: configuration reloaded\n" {
		t.Errorf("message after the reload %q, want READY=1 saying it reloaded", got)
	}

	a.stop(t)
	if got := sock.next(t); !strings.HasPrefix(got, "STOPPING=1\nSTATUS=stopping") {
		t.Errorf("message after stop %q, want STOPPING=1 with a status", got)
	}
	if want := "rwagent stopped: scraping ended, queues flushed, WAL synced and closed"; !strings.Contains(a.logs.String(), want) {
		t.Errorf("log does not say %q after a clean stop:\n%s", want, a.logs.String())
	}
}

// TestBadWatchdogEnv checks a watchdog period that cannot be honoured is
// refused by name rather than ignored.
func TestBadWatchdogEnv(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "15s")
	var out, errOut bytes.Buffer
	if code := run([]string{"--web.listen-address=127.0.0.1:0", "--storage.path=" + t.TempDir()}, &out, &errOut); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), `WATCHDOG_USEC="15s"`) {
		t.Errorf("stderr %q does not name WATCHDOG_USEC", errOut.String())
	}
}

package sdnotify

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listen opens the socket systemd would: a unixgram socket the test owns.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receive reads one datagram, failing the test after 5s.
func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read notify socket: %v", err)
	}
	return string(buf[:n])
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

func TestMessages(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	c := listen(t, sock)
	n := FromEnv(func(k string) string {
		if k == "NOTIFY_SOCKET" {
			return sock
		}
		return ""
	})
	if !n.Enabled() {
		t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
	}
	for _, tc := range []struct {
		name string
		send func() error
		want string
	}{
		{"ready", func() error { return n.Ready("") }, "READY=1\n"},
		{"ready with status", func() error { return n.Ready("scraping 3 targets") }, "READY=1\nSTATUS=scraping 3 targets\n"},
		{"stopping", func() error { return n.Stopping("flushing") }, "STOPPING=1\nSTATUS=flushing\n"},
		{"status", func() error { return n.Status("replaying the WAL") }, "STATUS=replaying the WAL\n"},
		{"watchdog", n.Watchdog, "WATCHDOG=1\n"},
		{"raw", func() error { return n.Send("EXTEND_TIMEOUT_USEC=1000000") }, "EXTEND_TIMEOUT_USEC=1000000\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.send(); err != nil {
				t.Fatal(err)
			}
			if got := receive(t, c); got != tc.want {
				t.Errorf("datagram %q, want %q", got, tc.want)
			}
		})
	}
}

// TestReloading checks MONOTONIC_USEC is CLOCK_MONOTONIC now, which
// systemd compares with its own reading for Type=notify-reload.
func TestReloading(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	c := listen(t, sock)
	before := monotonicUsec(t)
	if err := New(sock).Reloading("reloading rwagent.yaml"); err != nil {
		t.Fatal(err)
	}
	after := monotonicUsec(t)
	got := receive(t, c)
	m := regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=(\d+)\nSTATUS=reloading rwagent.yaml\n$`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("datagram %q is not RELOADING=1, MONOTONIC_USEC, STATUS", got)
	}
	usec, _ := strconv.ParseInt(m[1], 10, 64)
	if usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC=%d, want within [%d, %d]", usec, before, after)
	}
}

func TestAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@rwagent-sdnotify-test-%d", time.Now().UnixNano())
	c := listen(t, name)
	if err := New(name).Ready(""); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, c); got != "READY=1\n" {
		t.Errorf("datagram %q, want READY=1", got)
	}
}

func TestDisabled(t *testing.T) {
	for name, n := range map[string]*Notifier{"nil": nil, "no socket": New(""), "env unset": FromEnv(func(string) string { return "" })} {
		if n.Enabled() {
			t.Errorf("%s: Enabled() = true", name)
		}
		for _, err := range []error{n.Ready("x"), n.Reloading("x"), n.Stopping("x"), n.Status("x"), n.Watchdog(),
			n.RunWatchdog(context.Background(), time.Millisecond, nil)} {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

func TestSendErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	listen(t, sock)
	if err := New(sock).Status("two\nlines"); err == nil || !strings.Contains(err.Error(), "newline") {
		t.Errorf("a status with a newline: err %v, want one naming the newline", err)
	}
	gone := filepath.Join(t.TempDir(), "gone")
	if err := New(gone).Ready(""); err == nil || !strings.Contains(err.Error(), gone) {
		t.Errorf("no listener: err %v, want one naming %s", err, gone)
	}
}

func TestWatchdogInterval(t *testing.T) {
	const pid = 4242
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    time.Duration
		wantErr string
	}{
		{"no watchdog", nil, 0, ""},
		{"half the period", map[string]string{"WATCHDOG_USEC": "30000000"}, 15 * time.Second, ""},
		{"for this process", map[string]string{"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4242"}, time.Second, ""},
		{"for another process", map[string]string{"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, 0, ""},
		{"zero", map[string]string{"WATCHDOG_USEC": "0"}, 0, `WATCHDOG_USEC="0"`},
		{"not a number", map[string]string{"WATCHDOG_USEC": "30s"}, 0, `WATCHDOG_USEC="30s"`},
		{"bad pid", map[string]string{"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "me"}, 0, `WATCHDOG_PID="me"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := WatchdogInterval(func(k string) string { return tc.env[k] }, pid)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("interval %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRunWatchdog checks the pings come at the interval, not faster, and
// stop with the context.
func TestRunWatchdog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	c := listen(t, sock)
	const interval = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- New(sock).RunWatchdog(ctx, interval, func(err error) { t.Error(err) }) }()
	var at []time.Duration
	for range 4 {
		if got := receive(t, c); got != "WATCHDOG=1\n" {
			t.Fatalf("datagram %q, want WATCHDOG=1", got)
		}
		at = append(at, time.Since(start))
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunWatchdog: %v", err)
	}
	// The first ping is immediate; a ticker never fires early, so each
	// later one is at least about an interval after the start plus the
	// ones before it (slack for the ticker's rounding).
	for i, d := range at[1:] {
		if min := time.Duration(i+1) * interval * 9 / 10; d < min {
			t.Errorf("ping %d at %v, before %v: faster than the interval", i+2, d, min)
		}
	}
}

func TestRunWatchdogReportsErrors(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "gone")
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		done <- New(gone).RunWatchdog(ctx, time.Millisecond, func(err error) {
			select {
			case errs <- err:
			default:
			}
		})
	}()
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), gone) {
			t.Errorf("error %v does not name the socket", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("no error reported for a socket nobody listens on")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunWatchdog: %v", err)
	}
}

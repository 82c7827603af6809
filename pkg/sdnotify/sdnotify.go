// Package sdnotify tells systemd how the service is doing: the sd_notify(3)
// protocol, one datagram of newline-separated VAR=value lines sent to the
// unix socket named by $NOTIFY_SOCKET.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends state changes to systemd. A nil *Notifier, or one made
// without a socket, sends nothing and returns nil from every method, so
// callers need not check whether they run under systemd. It is safe for
// concurrent use: each message is one datagram on its own connection.
type Notifier struct {
	addr *net.UnixAddr
}

// New returns a Notifier that sends to socket, a path or, with a leading
// '@', an abstract socket. An empty socket gives a Notifier that sends
// nothing.
func New(socket string) *Notifier {
	if socket == "" {
		return &Notifier{}
	}
	// Go maps a leading '@' to Linux's abstract namespace itself.
	return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET as getenv reads it
// (os.Getenv in the binary). Unset, it sends nothing.
func FromEnv(getenv func(string) string) *Notifier {
	return New(getenv("NOTIFY_SOCKET"))
}

// Enabled says whether messages go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Send sends the lines as one datagram. A line must not contain a newline.
func (n *Notifier) Send(lines ...string) error {
	if !n.Enabled() {
		return nil
	}
	for _, l := range lines {
		if strings.ContainsRune(l, '\n') {
			return fmt.Errorf("sdnotify: line %q contains a newline", l)
		}
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: dial %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		return fmt.Errorf("sdnotify: send to %s: %w", n.addr.Name, err)
	}
	return nil
}

// Ready says start-up is complete (READY=1), with status as STATUS= when
// it is not empty. A Type=notify unit is "active" from then on.
func (n *Notifier) Ready(status string) error {
	return n.Send(withStatus([]string{"READY=1"}, status)...)
}

// Reloading says a reload of the configuration has begun (RELOADING=1),
// stamped with CLOCK_MONOTONIC as MONOTONIC_USEC=, which Type=notify-reload
// units require. Send Ready when the reload is done, whether it worked or
// not.
func (n *Notifier) Reloading(status string) error {
	if !n.Enabled() {
		return nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("sdnotify: read CLOCK_MONOTONIC: %w", err)
	}
	usec := strconv.FormatInt(ts.Nano()/1000, 10)
	return n.Send(withStatus([]string{"RELOADING=1", "MONOTONIC_USEC=" + usec}, status)...)
}

// Stopping says the service has begun to stop (STOPPING=1).
func (n *Notifier) Stopping(status string) error {
	return n.Send(withStatus([]string{"STOPPING=1"}, status)...)
}

// Status sets the one-line status `systemctl status` shows (STATUS=).
func (n *Notifier) Status(status string) error {
	return n.Send("STATUS=" + status)
}

// Watchdog tells the service manager the service is alive (WATCHDOG=1).
func (n *Notifier) Watchdog() error {
	return n.Send("WATCHDOG=1")
}

func withStatus(lines []string, status string) []string {
	if status != "" {
		lines = append(lines, "STATUS="+status)
	}
	return lines
}

// WatchdogInterval is how often to send WATCHDOG=1: half of $WATCHDOG_USEC
// as sd_watchdog_enabled(3) advises, so one late tick is not fatal. It
// returns 0 when there is no watchdog: WATCHDOG_USEC unset, or
// WATCHDOG_PID naming another process than pid. A value that does not
// parse is an error naming it.
func WatchdogInterval(getenv func(string) string, pid int) (time.Duration, error) {
	s := getenv("WATCHDOG_USEC")
	if s == "" {
		return 0, nil
	}
	usec, err := strconv.ParseUint(s, 10, 63)
	if err != nil || usec == 0 {
		return 0, fmt.Errorf("sdnotify: WATCHDOG_USEC=%q is not a positive number of microseconds", s)
	}
	if p := getenv("WATCHDOG_PID"); p != "" {
		wpid, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("sdnotify: WATCHDOG_PID=%q is not a process id", p)
		}
		if wpid != pid {
			return 0, nil
		}
	}
	return time.Duration(usec) * time.Microsecond / 2, nil
}

// RunWatchdog sends WATCHDOG=1 every interval, the first right away,
// until ctx is done; then it returns nil. A send that fails is handed to
// onErr (when not nil) and the loop goes on. It returns at once when
// interval is zero or n sends nothing.
func (n *Notifier) RunWatchdog(ctx context.Context, interval time.Duration, onErr func(error)) error {
	if interval <= 0 || !n.Enabled() {
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := n.Watchdog(); err != nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

package lograte

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
		l := &Limiter{Interval: 10 * time.Second, Level: slog.LevelWarn}
		l.Log(logger, "first")
		l.Log(logger, "held")
		l.Log(logger, "held")
		time.Sleep(10 * time.Second)
		l.Log(logger, "second", "k", "v")
		want := "level=WARN msg=first\nlevel=WARN msg=second k=v suppressed_since_last=2\n"
		if buf.String() != want {
			t.Errorf("logged\n%s\nwant\n%s", buf.String(), want)
		}
	})
}

func TestZeroLimiterLogsEverything(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	var l Limiter
	for range 3 {
		l.Log(logger, "line")
	}
	if n := strings.Count(buf.String(), "msg=line"); n != 3 {
		t.Errorf("zero Limiter logged %d of 3 lines", n)
	}
}

package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuTime returns the user+system CPU time of pid ("self" for this
// process) from /proc/<pid>/stat.
func cpuTime(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read cpu time of %s: %w", pid, err)
	}
	return parseStat(pid, b)
}

// parseStat returns utime+stime from the contents of /proc/<pid>/stat.
func parseStat(pid string, b []byte) (time.Duration, error) {
	// The command name (field 2) may hold spaces; fields after it are
	// counted from its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%s/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%s/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/%s/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// memory returns VmHWM (peak resident set) and VmRSS of pid in bytes from
// /proc/<pid>/status.
func memory(pid string) (peak, rss int64, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of %s: %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "VmHWM" && name != "VmRSS") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse %s of %s: %w", name, pid, err)
		}
		if name == "VmHWM" {
			peak = kb << 10
		} else {
			rss = kb << 10
		}
	}
	return peak, rss, nil
}

// rssTimeline reads pid's VmRSS every second until stop is closed and
// returns the highest reading of each step (zero step: one step, the whole
// time). A failed reading is skipped: the process may be exiting.
func rssTimeline(pid string, step time.Duration, stop <-chan struct{}) []int64 {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	start := time.Now()
	var steps []int64
	for {
		select {
		case <-stop:
			return steps
		case now := <-tick.C:
			_, rss, err := memory(pid)
			if err != nil {
				continue
			}
			// Readings come every second (a slow one drops ticks): the
			// step ending at one minute holds the reading taken then.
			i := 0
			if step > 0 {
				i = max(0, int((now.Sub(start)-time.Second/2)/step))
			}
			for len(steps) <= i {
				steps = append(steps, 0)
			}
			steps[i] = max(steps[i], rss)
		}
	}
}

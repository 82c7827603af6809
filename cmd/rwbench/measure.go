package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rwagent/rwagent/bench/loadgen"
	"github.com/rwagent/rwagent/bench/sink"
)

// stopGrace is how long an agent may take to stop after SIGTERM before it
// is killed.
const stopGrace = 20 * time.Second

// snapshot is what the runner reads at both ends of the window.
type snapshot struct {
	at      time.Time
	agent   time.Duration // agent CPU
	harness time.Duration // this process' CPU
	counts  sink.Counts
	served  int64
}

// take reads the snapshot; gen is nil in the receive workload.
func take(pid string, gen *loadgen.Generator, snk *sink.Sink) (snapshot, error) {
	s := snapshot{at: time.Now(), counts: snk.Counts()}
	if gen != nil {
		s.served, _ = gen.Served()
	}
	var err error
	if s.agent, err = cpuTime(pid); err != nil {
		return s, err
	}
	s.harness, err = cpuTime("self")
	return s, err
}

// measure runs one agent through warm-up, window and drain, and stops it.
// Failures are reported in result.Error.
func measure(ctx context.Context, a agent, w workload, gen *loadgen.Generator, snk *sink.Sink, o options, stderr io.Writer) result {
	r := result{Agent: a.Name, Proto: "1.0"}
	if a.RW2 {
		r.Proto = "2.0"
	}
	if _, err := os.Stat(a.Bin); err != nil {
		r.Error = fmt.Sprintf("binary not found: %v", err)
		return r
	}
	r.Version = a.version(ctx)
	dir := filepath.Join(o.workdir, a.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.Error = err.Error()
		return r
	}
	if err := measureRun(ctx, a, w, gen, snk, o, dir, stderr, &r); err != nil {
		r.Error = err.Error()
		if log, rerr := os.ReadFile(filepath.Join(dir, "agent.log")); rerr == nil {
			r.Error += "; log tail: " + tail(string(log), 400)
		}
	}
	return r
}

func measureRun(ctx context.Context, a agent, w workload, gen *loadgen.Generator, snk *sink.Sink, o options, dir string, stderr io.Writer, r *result) error {
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	var pusher *loadgen.Pusher
	if w.Receive {
		if w.ReceiveAddr, err = a.receiveAddr(listen); err != nil {
			return err
		}
		pusher, err = loadgen.NewPusher(loadgen.PushOptions{URL: "http://" + w.ReceiveAddr + "/api/v1/write", Key: w.Key,
			Targets: o.targets, Series: o.series, Interval: o.interval, BatchSize: o.batch,
			Logger: slog.New(slog.NewTextHandler(stderr, nil))})
		if err != nil {
			return err
		}
	}
	actx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	cmd, err := a.command(actx, w, dir, listen)
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return fmt.Errorf("create agent log: %w", err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	snk.Reset()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", a.Name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			stopAgent()
			<-exited
		}
	}()
	wait := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case err := <-exited:
			stopped = true
			return fmt.Errorf("%s exited early: %v", a.Name, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	// The pusher starts with the agent and retries until it listens; it
	// stops after the drain, before the agent.
	stopPush := func() {}
	if pusher != nil {
		pctx, cancel := context.WithCancel(ctx)
		pushed := make(chan error, 1)
		go func() { pushed <- pusher.Run(pctx) }()
		stopPush = func() {
			cancel()
			if err := <-pushed; err != nil {
				fmt.Fprintf(stderr, "rwbench: %s: pusher: %v\n", a.Name, err)
			}
			stopPush = func() {}
		}
		defer func() { stopPush() }()
	}

	if err := wait(o.warmup); err != nil {
		return err
	}
	begin, err := take(pid, gen, snk)
	if err != nil {
		return err
	}
	snk.SetWindow(begin.at, begin.at.Add(o.duration))
	var prof *profiles
	if o.pprofDir != "" && a.Flavour == "rwagent" {
		prof = startProfiles(ctx, "http://"+listen, o.duration, filepath.Join(o.pprofDir, a.Name))
	}
	rssDone := make(chan []int64, 1)
	stopRSS := make(chan struct{})
	go func() { rssDone <- rssTimeline(pid, o.rssStep, stopRSS) }()
	err = wait(o.duration)
	close(stopRSS)
	r.RSSTimeline = <-rssDone
	if err != nil {
		return err
	}
	end, err := take(pid, gen, snk)
	if err != nil {
		return err
	}
	if r.PeakRSS, r.RSS, err = memory(pid); err != nil {
		return err
	}
	if prof != nil {
		for _, err := range prof.finish(ctx) {
			fmt.Fprintf(stderr, "rwbench: %s: %v\n", a.Name, err)
		}
	}
	if err := wait(o.drain); err != nil {
		return err
	}
	win := snk.Window()
	final := snk.Counts()
	stopPush()
	stopAgent()
	<-exited
	stopped = true

	secs := end.at.Sub(begin.at).Seconds()
	// arrived counts target samples by arrival time, the same clock as the
	// wire bytes; win.Samples counts those scraped in the window, a whole
	// number of scrapes, the same clock as the CPU time (steady state).
	arrived := float64((end.counts.Samples + end.counts.Histograms - end.counts.Report) -
		(begin.counts.Samples + begin.counts.Histograms - begin.counts.Report))
	delivered := float64(win.Samples)
	r.DurationS = secs
	r.SamplesPerS = delivered / secs
	r.CPUSeconds = (end.agent - begin.agent).Seconds()
	r.HarnessCPU = (end.harness - begin.harness).Seconds()
	if delivered > 0 {
		r.CPUPerMillion = r.CPUSeconds / delivered * 1e6
		r.HarnessPerMill = r.HarnessCPU / delivered * 1e6
	}
	if arrived > 0 {
		r.WirePerSample = float64(end.counts.WireBytes-begin.counts.WireBytes) / arrived
	}
	r.ActiveSeries = win.Series
	if win.Series > 0 {
		r.RSSPerSeries = float64(r.PeakRSS) / float64(win.Series)
	}
	if len(r.RSSTimeline) > 1 {
		var b strings.Builder
		for i, v := range r.RSSTimeline {
			fmt.Fprintf(&b, " %d:%.1f", i+1, float64(v)/(1<<20))
		}
		fmt.Fprintf(stderr, "rwbench: %s: highest RSS MiB in each %s of the window:%s\n", a.Name, o.rssStep, b.String())
	}
	r.P50ms = float64(win.P50) / float64(time.Millisecond)
	r.P99ms = float64(win.P99) / float64(time.Millisecond)
	r.MaxMs = float64(win.Max) / float64(time.Millisecond)
	r.Served = end.served - begin.served
	if pusher != nil {
		// Counted by timestamp, as the sink's window is.
		r.Served = pusher.Acked(begin.at, begin.at.Add(o.duration))
		c := pusher.Counts()
		r.PushRetries, r.PushFailed = c.Retries, c.Failed
		p50, p99, maxTook := pusher.AnswerTimes(begin.at, begin.at.Add(o.duration))
		r.PushAnswerP50ms = float64(p50) / float64(time.Millisecond)
		r.PushAnswerP99ms = float64(p99) / float64(time.Millisecond)
		r.PushAnswerMaxMs = float64(maxTook) / float64(time.Millisecond)
		fmt.Fprintf(stderr, "rwbench: %s: answers to the pusher p50 %v, p99 %v, max %v; %d retries, %d samples refused\n",
			a.Name, p50, p99, maxTook, c.Retries, c.Failed)
	}
	r.Delivered = win.Samples
	r.Histograms = win.Histograms
	if r.Served > 0 {
		r.DeliveryRatio = float64(win.Samples) / float64(r.Served)
	}
	r.Requests = end.counts.Requests - begin.counts.Requests
	r.Duplicates = final.Duplicates
	r.OutOfOrder = final.OutOfOrder
	r.Rejected = final.Rejected
	if delivered == 0 {
		return errors.New("no samples arrived in the window")
	}
	return nil
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.ReplaceAll(s, "\n", " | ")
}

package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rwagent/rwagent/pkg/receive"
)

// mixinQuery is one entry of testdata/mixin-queries.txt.
type mixinQuery struct {
	title, expr string
	empty       string // why the result is empty; "" expects a result
}

func loadMixinQueries(t *testing.T) []mixinQuery {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "mixin-queries.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var qs []mixinQuery
	var cur *mixinQuery
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "== "):
			qs = append(qs, mixinQuery{title: strings.TrimPrefix(line, "== ")})
			cur = &qs[len(qs)-1]
		case cur == nil || strings.TrimSpace(line) == "":
			cur = nil
		case cur.expr == "" && strings.HasPrefix(line, "expect: empty; "):
			cur.empty = strings.TrimPrefix(line, "expect: empty; ")
		default:
			cur.expr += line + "\n"
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.expr == "" {
			t.Fatalf("mixin query %q has no expression", q.title)
		}
	}
	return qs
}

// TestMixinQueries runs an agent with two remote_writes that scrapes its
// own /metrics and sends them to a receiver, as a deployment watched with
// the Prometheus mixin does, and evaluates each query of the mixin (see
// testdata/mixin-queries.txt) there with Prometheus' PromQL engine: every
// query evaluates without error (no duplicate series), and returns
// series unless the entry says why not.
func TestMixinQueries(t *testing.T) {
	queries := loadMixinQueries(t)

	dir := t.TempDir()
	recv, base := serveReceiver(t, receive.Options{Dir: filepath.Join(dir, "amp"), WorkspaceID: "ws-mixin"})

	// The agent scrapes itself, so it needs its address before it
	// starts: take a free port and give it back.
	self := freeLocalAddr(t)
	cfg := strings.NewReplacer("RECEIVER", base+"/workspaces/ws-mixin/api/v1/remote_write", "SELF", self).Replace(`
global:
  scrape_interval: 100ms
  scrape_timeout: 90ms
  external_labels:
    cluster: e2e
scrape_configs:
  - job_name: rwagent
    static_configs:
      - targets: [SELF]
remote_write:
  - url: RECEIVER
    name: first
    queue_config: {batch_send_deadline: 50ms, min_backoff: 10ms, max_backoff: 100ms}
  - url: RECEIVER
    name: second
    queue_config: {batch_send_deadline: 50ms, min_backoff: 10ms, max_backoff: 100ms}
`)
	cfgFile := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	a := launch(t, &agentUnderTest{recv: recv}, agentOptions{
		ConfigFile: cfgFile, StoragePath: filepath.Join(dir, "agent"), FlushDeadline: 5 * time.Second,
		ListenAddr: self,
	})

	// $instance is a regex inside a PromQL string: its backslashes doubled.
	instanceRE := strings.ReplaceAll(regexp.QuoteMeta(self), `\`, `\\`)
	vars := strings.NewReplacer("$cluster", "e2e", "$job", "rwagent", "$instance", instanceRE, "$url", ".+")
	// Rates need two scrapes that both queues have delivered.
	waitFor(t, "two scrapes of the agent delivered by both queues", func() bool {
		v := a.query(t, `count_over_time(prometheus_remote_storage_samples_total{job="rwagent"}[1m]) >= 3`)
		return len(v) == 2
	})
	for _, q := range queries {
		expr := vars.Replace(q.expr)
		v, err := recv.Query(context.Background(), expr, time.Now())
		switch {
		case err != nil:
			t.Errorf("%s: %v", q.title, err)
		case q.empty == "" && len(v) == 0:
			t.Errorf("%s: no result for\n%s", q.title, expr)
		case q.empty != "" && len(v) > 0:
			t.Errorf("%s: expected no result (%s), got %v", q.title, q.empty, v)
		}
	}
}

// freeLocalAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeLocalAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

package scrape

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/util/logging"

	"github.com/rwagent/rwagent/pkg/lograte"
)

// failureLogs writes one JSON line per failed scrape to the
// scrape_failure_log_file of the scrape's config (global or per job), as
// Prometheus does: time, level, msg (the error), scrape_job and target
// (redacted). The files are opened by Prometheus' util/logging, in append
// mode, and reopened on every ApplyConfig so that a rotated file is
// followed. Safe for concurrent use.
type failureLogs struct {
	logger *slog.Logger    // where write failures go
	limit  lograte.Limiter // of write failures

	mu    sync.RWMutex
	files map[string]*logging.JSONFileLogger // by path; guarded by mu
}

// openFailureLogs opens the scrape_failure_log_file of each config. On error
// it closes what it opened.
func openFailureLogs(cfgs []*config.ScrapeConfig) (map[string]*logging.JSONFileLogger, error) {
	files := map[string]*logging.JSONFileLogger{}
	for _, c := range cfgs {
		p := c.ScrapeFailureLogFile
		if p == "" || files[p] != nil {
			continue
		}
		f, err := logging.NewJSONFileLogger(p)
		if err != nil {
			closeFailureLogs(files)
			return nil, fmt.Errorf("apply scrape config of job %q: scrape_failure_log_file: %w", c.JobName, err)
		}
		files[p] = f
	}
	return files, nil
}

func closeFailureLogs(files map[string]*logging.JSONFileLogger) {
	for _, f := range files {
		_ = f.Close()
	}
}

// swap installs files and closes the ones it replaces, once no line is
// being written to them.
func (l *failureLogs) swap(files map[string]*logging.JSONFileLogger) {
	l.mu.Lock()
	old := l.files
	l.files = files
	l.mu.Unlock()
	closeFailureLogs(old)
}

// log writes the failure of a scrape of target in job to the file at path.
// An empty path, or one not opened by the last swap, writes nothing.
func (l *failureLogs) log(path, job, target string, scrapeErr error) {
	if path == "" {
		return
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	f := l.files[path]
	if f == nil {
		return
	}
	r := slog.NewRecord(time.Now(), slog.LevelError, scrapeErr.Error(), 0)
	r.AddAttrs(slog.String("scrape_job", job), slog.String("target", target))
	if err := f.Handle(context.Background(), r); err != nil {
		if l.logger != nil {
			l.limit.Log(l.logger, "Write scrape_failure_log_file", "file", path, "err", err)
		}
	}
}

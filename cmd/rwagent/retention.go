package main

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/config"

	"github.com/rwagent/rwagent/pkg/remotewrite"
	"github.com/rwagent/rwagent/pkg/sendpos"
	"github.com/rwagent/rwagent/pkg/wal"
)

// DefaultPositionInterval is how often each endpoint's acknowledged WAL
// position is saved. After a crash, what was acknowledged since the last
// save is sent again: one second of sending, plus the batches in flight.
const DefaultPositionInterval = time.Second

// endpoint is one remote_write queue and its saved send position.
type endpoint struct {
	key   string
	q     *remotewrite.Queue
	saved wal.Position // last position saved durably (or loaded); owned by the retention loop
}

// resumePositions returns the send-position key and the WAL position to
// start from of each remote_write config, in order, and deletes the saved
// positions of endpoints no longer configured, so that they stop holding
// the WAL. Every problem with a saved position is logged and answered with
// the safe choice: resend from the oldest data the WAL holds.
func resumePositions(store *sendpos.Store, w *wal.WAL, rws []*config.RemoteWriteConfig, logger *slog.Logger) (keys []string, starts []wal.Position) {
	used := make(map[string]bool, len(rws))
	for i, rw := range rws {
		key := sendpos.Key(rw.Name, rw.URL.String())
		if used[key] { // two unnamed entries with one URL
			key += "-" + strconv.Itoa(i)
		}
		used[key] = true
		keys = append(keys, key)
		lg := logger.With("remote_name", rw.Name, "url", rw.URL.Redacted(), "position_file", key)
		st, ok, err := store.Load(key)
		saved := st.Acked
		switch {
		case err != nil:
			lg.Warn("send position unreadable; sending again from the oldest data in the WAL", "err", err)
			starts = append(starts, wal.Position{})
			continue
		case !ok:
			lg.Info("no saved send position; sending from the oldest data in the WAL")
			starts = append(starts, wal.Position{})
			continue
		}
		start, err := w.Resume(saved)
		if err != nil {
			lg.Warn("saved send position does not fit the WAL; sending again from the oldest data in it", "saved", saved.String(), "err", err)
		} else {
			lg.Info("resuming remote write at its saved send position", "position", start.String())
		}
		starts = append(starts, start)
	}
	stale, err := store.Keys()
	if err != nil {
		logger.Warn("list saved send positions", "err", err)
	}
	for _, k := range stale {
		if used[k] {
			continue
		}
		if err := store.Remove(k); err != nil {
			logger.Warn("remove the send position of a removed remote_write", "position_file", k, "err", err)
			continue
		}
		logger.Info("remote_write no longer configured: its send position no longer holds the WAL", "position_file", k)
	}
	return keys, starts
}

// retention saves send positions and truncates the WAL below them. It is
// owned by one goroutine (run), then by the caller of saveAll once run has
// returned.
type retention struct {
	wal         *wal.WAL
	store       *sendpos.Store
	endpoints   []*endpoint
	logger      *slog.Logger
	saveEvery   time.Duration
	truncEvery  time.Duration
	maxSize     int64           // wal.max_size; zero: no cap
	maxAge      time.Duration   // wal.max_age; zero: no limit
	saveFailing map[string]bool // keys whose last save failed: log the failure once, and the recovery
}

// run saves positions every saveEvery and truncates every truncEvery until
// ctx is done.
func (r *retention) run(ctx context.Context) {
	save := time.NewTicker(r.saveEvery)
	defer save.Stop()
	trunc := time.NewTicker(r.truncEvery)
	defer trunc.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-save.C:
			r.saveAll()
			r.trim()
		case <-trunc.C:
			r.saveAll()
			r.truncate()
		}
	}
}

// saveAll saves each endpoint's acknowledged position that moved.
func (r *retention) saveAll() {
	for _, e := range r.endpoints {
		p := e.q.Acked()
		if p == e.saved {
			continue
		}
		err := r.store.Save(e.key, sendpos.State{Acked: p})
		switch {
		case err != nil && !r.saveFailing[e.key]:
			r.logger.Error("save send position; retrying every interval, the WAL is held at the last saved one", "position_file", e.key, "err", err)
		case err == nil && r.saveFailing[e.key]:
			r.logger.Info("save send position recovered", "position_file", e.key)
		}
		if r.saveFailing == nil {
			r.saveFailing = map[string]bool{}
		}
		r.saveFailing[e.key] = err != nil
		if err == nil {
			e.saved = p
		}
	}
}

// trim applies wal.max_size and wal.max_age, and names the endpoints that
// held back the segments removed unsent.
func (r *retention) trim() {
	if r.maxSize <= 0 && r.maxAge <= 0 {
		return
	}
	res, err := r.wal.Trim(r.maxSize, r.maxAge, time.Now())
	if err != nil {
		r.logger.Warn("trim WAL to wal.max_size and wal.max_age", "err", err)
		return
	}
	if res.Segments == 0 {
		return
	}
	var behind []string
	for _, e := range r.endpoints {
		if e.q.Acked().Compare(res.Before) < 0 {
			behind = append(behind, e.key)
		}
	}
	r.logger.Warn("WAL over wal.max_size or wal.max_age: unsent samples dropped; these remote_write endpoints held it back",
		"endpoints", behind, "segments_removed", res.Segments, "first_left", res.Before.String(),
		"samples_wal_full", res.Full.Samples+res.Full.Histograms, "samples_too_old", res.TooOld.Samples+res.TooOld.Histograms)
}

// truncate drops the segments every endpoint's saved position has passed.
// Truncating below the saved positions rather than the live ones keeps
// every saved position inside the WAL, so that a restart resumes exactly.
func (r *retention) truncate() {
	if len(r.endpoints) == 0 {
		return
	}
	low := r.endpoints[0].saved
	for _, e := range r.endpoints[1:] {
		if e.saved.Compare(low) < 0 {
			low = e.saved
		}
	}
	if err := r.wal.Truncate(low); err != nil {
		r.logger.Warn("truncate WAL", "before", low.String(), "err", err)
	}
}

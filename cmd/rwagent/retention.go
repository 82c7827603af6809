package main

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/prometheus/config"

	"github.com/rwagent/rwagent/pkg/remotewrite"
	"github.com/rwagent/rwagent/pkg/sendpos"
	"github.com/rwagent/rwagent/pkg/wal"
)

// DefaultPositionInterval is how often each endpoint's send positions are
// saved durably (fsynced). Between saves the live file (sendpos.Live) is
// rewritten without fsync after every acknowledgement and before every
// send past the last sent mark: a process crash loses none of it, so after
// one only what was in flight (or acknowledged since the last live write)
// is sent again, and counted. A power loss may lose the live file's last
// second: then up to one interval more is resent, and what was sent in
// that second may go uncounted.
const DefaultPositionInterval = time.Second

// endpoint is one remote_write queue and its send positions. It is the
// queue's remotewrite.PositionWriter.
type endpoint struct {
	key    string
	q      *remotewrite.Queue
	live   *sendpos.Live // nil: none could be opened
	logger *slog.Logger
	saved  wal.Position // acknowledged position last saved durably (or loaded); owned by the retention loop

	mu         sync.Mutex
	state      sendpos.State // last given to the live file; mu
	savedState sendpos.State // last saved durably; mu
	liveFailed bool          // the last live write failed; mu
}

// WritePositions implements remotewrite.PositionWriter: it rewrites the
// live file. A write that fails empties the file, so that a restart does
// not trust a stale sent mark, and is logged once until one succeeds.
func (e *endpoint) WritePositions(acked, sent wal.Position) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.state = sendpos.State{Acked: acked, Sent: sent, SentKnown: true}
	if e.live == nil {
		return
	}
	err := e.live.Write(e.state)
	if err != nil {
		if ierr := e.live.Invalidate(); ierr != nil {
			err = errors.Join(err, ierr)
		}
	}
	switch {
	case err != nil && !e.liveFailed:
		e.logger.Error("write live send position; after a crash, everything after the saved position will count as resent", "position_file", e.key, "err", err)
	case err == nil && e.liveFailed:
		e.logger.Info("write live send position recovered", "position_file", e.key)
	}
	e.liveFailed = err != nil
}

// resume is where one endpoint starts.
type resume struct {
	key   string
	start wal.Position // where its queue starts reading
	// resendUntil is the last run's sent high-water mark: records from
	// start up to it may have reached the receiver already.
	resendUntil wal.Position
	// lost is what the WAL trimmed of what the endpoint had not sent.
	lost *wal.GapError
}

// resumePositions returns, for each remote_write config in order, its
// send-position key, where to start and what may be resent, and deletes
// the saved positions of endpoints no longer configured, so that they stop
// holding the WAL. Every problem with a saved position is logged and
// answered with the safe choice: resend from the oldest data the WAL
// holds. When the last run's sent mark is unknown (no live file, or one
// older than the saved position: a power loss), everything up to where
// this process started writing the WAL counts as possibly sent.
func resumePositions(store *sendpos.Store, w *wal.WAL, rws []*config.RemoteWriteConfig, logger *slog.Logger) []resume {
	used := make(map[string]bool, len(rws))
	var out []resume
	for i, rw := range rws {
		key := sendpos.Key(rw.Name, rw.URL.String())
		if used[key] { // two unnamed entries with one URL
			key += "-" + strconv.Itoa(i)
		}
		used[key] = true
		lg := logger.With("remote_name", rw.Name, "url", rw.URL.Redacted(), "position_file", key)
		var durable, live *sendpos.State
		unreadable := false
		if st, ok, err := store.Load(key); err != nil {
			lg.Warn("send position unreadable", "err", err)
			unreadable = true
		} else if ok {
			durable = &st
		}
		if st, ok, err := store.LoadLive(key); err != nil {
			lg.Warn("live send position unreadable; the saved one is used", "err", err)
			unreadable = true
		} else if ok {
			live = &st
		}
		st, ok := sendpos.Latest(durable, live)
		switch {
		case !ok && unreadable:
			// Nothing says what was sent: all of it may have been.
			lg.Warn("no usable send position; sending again from the oldest data in the WAL, all of it counted as resent",
				"bytes", w.Bytes(wal.Position{}, w.Started()))
			out = append(out, resume{key: key, resendUntil: w.Started()})
			continue
		case !ok:
			lg.Info("no saved send position; sending from the oldest data in the WAL")
			out = append(out, resume{key: key})
			continue
		}
		if !st.SentKnown {
			st.Sent = w.Started()
		}
		start, err := w.Resume(st.Acked)
		if errors.Is(err, wal.ErrPositionPastEnd) {
			// Not a position of this WAL: the file is as good as corrupt,
			// and so is its sent mark.
			lg.Warn("send position corrupt: it points past the end of the WAL; sending again from the oldest data in the WAL, all of it counted as resent",
				"saved", st.Acked.String(), "err", err, "bytes", w.Bytes(wal.Position{}, w.Started()))
			out = append(out, resume{key: key, resendUntil: w.Started()})
			continue
		}
		lost, _ := errors.AsType[*wal.GapError](err)
		switch {
		case lost != nil && lost.Full == (wal.Counts{}) && lost.TooOld == (wal.Counts{}):
			lg.Warn("repairs cut the WAL past the saved send position: what this endpoint had not sent there is counted as dropped (wal_corrupt, an upper bound); sending from the oldest data left", "saved", st.Acked.String(), "err", err)
		case lost != nil:
			lg.Warn("the WAL was trimmed past the saved send position (wal.max_size or wal.max_age): what this endpoint had not sent there is counted as dropped; sending from the oldest data left", "saved", st.Acked.String(), "err", err)
		case err != nil:
			lg.Warn("saved send position does not fit the WAL; sending again from the oldest data in it", "saved", st.Acked.String(), "err", err)
		default:
			lg.Info("resuming remote write at its saved send position", "position", start.String())
		}
		if n := w.Bytes(start, st.Sent); n > 0 {
			lg.Warn("resending bytes of WAL acknowledged-or-in-flight before the restart; their samples count in rwagent_remote_write_resent_samples_total",
				"bytes", n, "from", start.String(), "to", st.Sent.String(), "sent_mark_known", st.SentKnown)
		}
		out = append(out, resume{key: key, start: start, resendUntil: st.Sent, lost: lost})
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
	return out
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

// saveAll saves durably each endpoint's positions that moved: it fsyncs
// the live file, then saves the same state with sendpos.Store.Save.
func (r *retention) saveAll() {
	for _, e := range r.endpoints {
		e.mu.Lock()
		st, changed := e.state, e.state != e.savedState
		e.mu.Unlock()
		if !changed {
			continue
		}
		var err error
		if e.live != nil {
			err = e.live.Sync()
		}
		if err == nil {
			err = r.store.Save(e.key, st)
		}
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
			e.mu.Lock()
			e.savedState = st
			e.mu.Unlock()
			e.saved = st.Acked
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

// truncate drops the segments every endpoint's saved position has passed,
// once they outweigh the checkpoint that replaces them.
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
	// Lazily: a checkpoint rewrites every series, so it waits until the
	// sent segments hold twice what it will; under wal.max_size, at most
	// until they reach a quarter of the cap, so that trimming finds sent
	// segments gone.
	if _, err := r.wal.TruncateLazily(low, r.maxSize/4); err != nil {
		r.logger.Warn("truncate WAL", "before", low.String(), "err", err)
	}
}

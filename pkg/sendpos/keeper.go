package sendpos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/rwagent/rwagent/pkg/wal"
)

// DefaultSaveInterval is how often each endpoint's send positions are
// saved durably (fsynced). Between saves the live file (Live) is rewritten
// without fsync after every acknowledgement and before every send past
// the last sent mark: a process crash loses none of it, so after one only
// what was in flight (or acknowledged since the last live write) is sent
// again, and counted. A power loss may lose the live file's last second:
// then up to one interval more is resent, and what was sent in that second
// may go uncounted.
const DefaultSaveInterval = time.Second

// Endpoint names one remote_write endpoint to a Keeper.
type Endpoint struct {
	// Name is its remote_write name, possibly empty.
	Name string
	// URL is where it sends. It is hashed into the file key of an unnamed
	// endpoint and logged redacted, never in the clear.
	URL *url.URL
}

// Options configure a Keeper.
type Options struct {
	// Dir holds the position files (see Store).
	Dir string
	// WAL is the log the positions point into; the Keeper truncates and
	// trims it.
	WAL *wal.WAL
	// Endpoints are the remote_write endpoints, in configuration order.
	// Saved positions of keys not among them are deleted by Open.
	Endpoints []Endpoint
	// SaveInterval is how often positions are saved durably and the WAL
	// trimmed to MaxSize and MaxAge; zero means DefaultSaveInterval.
	SaveInterval time.Duration
	// TruncateFrequency is how often the WAL is truncated below every
	// endpoint's saved position. It must be positive.
	TruncateFrequency time.Duration
	// MaxSize caps the WAL in bytes (wal.max_size); zero means no cap.
	MaxSize int64
	// MaxAge removes segments last written longer ago (wal.max_age); zero
	// means no limit.
	MaxAge time.Duration
	// Logger receives what the Keeper decides; nil discards it.
	Logger *slog.Logger
}

// Keeper owns the send positions of every remote_write endpoint of one
// WAL: where each resumes after a restart (Open), the live file each
// queue reports to (Writer), the periodic durable save, and the WAL's
// truncation and trimming, which the slowest endpoint holds back (Run).
//
// Build it with Open; call Run once, and Close after Run has returned.
// Endpoints may be added (Add), continued by a new queue (Continue) and
// removed (Remove) while Run runs, as a reload changes them.
type Keeper struct {
	wal        *wal.WAL
	store      *Store
	logger     *slog.Logger
	saveEvery  time.Duration
	truncEvery time.Duration
	maxSize    int64
	maxAge     time.Duration
	resumes    []Resume // of Options.Endpoints, by index

	// mu serializes the changes of writers with the saves, trims and
	// truncations that read them, so that a removed endpoint's files are
	// never saved again after Remove deleted them.
	mu      sync.Mutex
	writers []*Writer // mu
	// saveFailing holds the keys whose last save failed: their failure is
	// logged once, and their recovery. mu.
	saveFailing map[string]bool
}

// Queue is what a Keeper asks of an endpoint's queue: its acknowledged
// position, to name the endpoints that held back a trim.
type Queue interface {
	Acked() wal.Position
}

// Writer is one endpoint's send positions. It implements remotewrite's
// PositionWriter: its queue reports to it, and it writes the live file.
// Safe for concurrent use.
type Writer struct {
	key    string
	live   *Live // nil: none could be opened
	logger *slog.Logger
	queue  Queue        // set by Keeper.Attach; nil: the last acked written stands in; Keeper.mu
	saved  wal.Position // acknowledged position last saved durably (or loaded); owned by Run

	mu         sync.Mutex
	state      State // last given to the live file; mu
	savedState State // last saved durably; mu
	liveFailed bool  // the last live write failed; mu
}

// Open decides where each endpoint resumes (see Resume), deletes the
// saved positions of endpoints no longer configured, so that they stop
// holding the WAL, and opens each endpoint's live file, which starts with
// this run's start. It starts nothing.
func Open(opts Options) (*Keeper, error) {
	if opts.WAL == nil {
		return nil, errors.New("send positions: no WAL")
	}
	if opts.TruncateFrequency <= 0 {
		return nil, fmt.Errorf("send positions: truncate frequency %s is not positive", opts.TruncateFrequency)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	k := &Keeper{
		wal:        opts.WAL,
		store:      New(opts.Dir),
		logger:     logger,
		saveEvery:  opts.SaveInterval,
		truncEvery: opts.TruncateFrequency,
		maxSize:    opts.MaxSize,
		maxAge:     opts.MaxAge,
	}
	if k.saveEvery <= 0 {
		k.saveEvery = DefaultSaveInterval
	}
	k.resumes = resumePositions(k.store, k.wal, opts.Endpoints, logger)
	for i, ep := range opts.Endpoints {
		k.writers = append(k.writers, k.newWriter(ep, k.resumes[i]))
	}
	return k, nil
}

// newWriter opens the live file of the endpoint ep resuming at rs, which
// starts with this run's start: a sent mark never goes back, so a crash
// before anything is sent again still counts what the last run may have
// sent.
func (k *Keeper) newWriter(ep Endpoint, rs Resume) *Writer {
	w := &Writer{key: rs.Key, saved: rs.Start, logger: k.logger.With("remote_name", ep.Name, "url", ep.URL.Redacted())}
	live, err := k.store.OpenLive(rs.Key)
	if err != nil {
		w.logger.Error("open live send position; after a crash, everything after the saved position will count as resent", "err", err)
	} else {
		w.live = live
	}
	w.WritePositions(rs.Start, rs.Start.Max(rs.ResendUntil))
	return w
}

// Add starts keeping the positions of the endpoint ep, of send-position
// key (see Keys), added while Run runs: it resumes where a saved position
// says, as at Open, else at the oldest data in the WAL. Attach its queue
// to the Writer returned. Adding a key already kept is an error.
func (k *Keeper) Add(ep Endpoint, key string) (Resume, *Writer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.find(key) >= 0 {
		return Resume{}, nil, fmt.Errorf("send positions: endpoint %s is already kept", key)
	}
	rs := resumeOne(k.store, k.wal, key, ep, k.logger)
	w := k.newWriter(ep, rs)
	k.writers = append(k.writers, w)
	return rs, w, nil
}

// Continue hands the positions of key to a new queue for the same
// endpoint, once the old queue's Run has returned: the new one resumes
// where the old one acknowledged, and counts what the old one may have
// sent past it as resent. Attach the new queue to the Writer returned.
func (k *Keeper) Continue(key string) (Resume, *Writer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.find(key)
	if i < 0 {
		return Resume{}, nil, fmt.Errorf("send positions: endpoint %s is not kept", key)
	}
	w := k.writers[i]
	acked := w.acked()
	w.mu.Lock()
	sent := w.state.Sent
	w.mu.Unlock()
	w.queue = nil
	return Resume{Key: key, Start: acked, ResendUntil: sent.Max(acked)}, w, nil
}

// Remove stops keeping the positions of key, once its queue's Run has
// returned, and deletes its files, so that it no longer holds the WAL back
// (as Open does for an endpoint no longer configured).
func (k *Keeper) Remove(key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.find(key)
	if i < 0 {
		return fmt.Errorf("send positions: endpoint %s is not kept", key)
	}
	w := k.writers[i]
	k.writers = append(k.writers[:i], k.writers[i+1:]...)
	delete(k.saveFailing, key)
	var errs []error
	if w.live != nil {
		errs = append(errs, w.live.Close())
	}
	errs = append(errs, k.store.Remove(key))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("send positions: remove %s: %w", key, err)
	}
	w.logger.Info("remote_write removed: its send position no longer holds the WAL", "position_file", key)
	return nil
}

// find returns the index of key's writer, or -1. k.mu must be held.
func (k *Keeper) find(key string) int {
	for i, w := range k.writers {
		if w.key == key {
			return i
		}
	}
	return -1
}

// Resume returns where endpoint i (in Options.Endpoints) starts.
func (k *Keeper) Resume(i int) Resume { return k.resumes[i] }

// Writer returns the positions endpoint i (in Options.Endpoints) reports
// to, before any Add or Remove.
func (k *Keeper) Writer(i int) *Writer {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.writers[i]
}

// Attach tells w, one of the Keeper's writers, its queue.
func (k *Keeper) Attach(w *Writer, q Queue) {
	k.mu.Lock()
	defer k.mu.Unlock()
	w.queue = q
}

// Close closes the live files. Call it after Run has returned.
func (k *Keeper) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var errs []error
	for _, w := range k.writers {
		if w.live != nil {
			errs = append(errs, w.live.Close())
		}
	}
	return errors.Join(errs...)
}

// WritePositions implements remotewrite.PositionWriter: it rewrites the
// live file. A write that fails empties the file, so that a restart does
// not trust a stale sent mark, and is logged once until one succeeds.
func (w *Writer) WritePositions(acked, sent wal.Position) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.state = State{Acked: acked, Sent: sent, SentKnown: true}
	if w.live == nil {
		return
	}
	err := w.live.Write(w.state)
	if err != nil {
		if ierr := w.live.Invalidate(); ierr != nil {
			err = errors.Join(err, ierr)
		}
	}
	switch {
	case err != nil && !w.liveFailed:
		w.logger.Error("write live send position; after a crash, everything after the saved position will count as resent", "position_file", w.key, "err", err)
	case err == nil && w.liveFailed:
		w.logger.Info("write live send position recovered", "position_file", w.key)
	}
	w.liveFailed = err != nil
}

// acked returns the queue's acknowledged position, or the last one
// written when no queue is attached.
func (w *Writer) acked() wal.Position {
	if w.queue != nil {
		return w.queue.Acked()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state.Acked
}

// Run saves positions every save interval (and trims the WAL to its
// limits) and truncates the WAL every truncate frequency until ctx is
// done, then saves what moved since the last save. Stop it after the
// queues have stopped, so that what they acknowledged while flushing is
// saved, and before the WAL closes. Run must be called once; it returns
// nil.
func (k *Keeper) Run(ctx context.Context) error {
	save := time.NewTicker(k.saveEvery)
	defer save.Stop()
	trunc := time.NewTicker(k.truncEvery)
	defer trunc.Stop()
	for {
		select {
		case <-ctx.Done():
			k.saveAll()
			return nil
		case <-save.C:
			k.saveAll()
			k.trim()
		case <-trunc.C:
			k.saveAll()
			k.truncate()
		}
	}
}

// saveAll saves durably each endpoint's positions that moved: it fsyncs
// the live file, then saves the same state with Store.Save.
func (k *Keeper) saveAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, w := range k.writers {
		w.mu.Lock()
		st, changed := w.state, w.state != w.savedState
		w.mu.Unlock()
		if !changed {
			continue
		}
		var err error
		if w.live != nil {
			err = w.live.Sync()
		}
		if err == nil {
			err = k.store.Save(w.key, st)
		}
		switch {
		case err != nil && !k.saveFailing[w.key]:
			k.logger.Error("save send position; retrying every interval, the WAL is held at the last saved one", "position_file", w.key, "err", err)
		case err == nil && k.saveFailing[w.key]:
			k.logger.Info("save send position recovered", "position_file", w.key)
		}
		if k.saveFailing == nil {
			k.saveFailing = map[string]bool{}
		}
		k.saveFailing[w.key] = err != nil
		if err == nil {
			w.mu.Lock()
			w.savedState = st
			w.mu.Unlock()
			w.saved = st.Acked
		}
	}
}

// trim applies wal.max_size and wal.max_age, and names the endpoints that
// held back the segments removed unsent.
func (k *Keeper) trim() {
	if k.maxSize <= 0 && k.maxAge <= 0 {
		return
	}
	res, err := k.wal.Trim(k.maxSize, k.maxAge, time.Now())
	if err != nil {
		k.logger.Warn("trim WAL to wal.max_size and wal.max_age", "err", err)
		return
	}
	if res.Segments == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var behind []string
	for _, w := range k.writers {
		if w.acked().Compare(res.Before) < 0 {
			behind = append(behind, w.key)
		}
	}
	k.logger.Warn("WAL over wal.max_size or wal.max_age: unsent samples dropped; these remote_write endpoints held it back",
		"endpoints", behind, "segments_removed", res.Segments, "first_left", res.Before.String(),
		"samples_wal_full", res.Full.Samples+res.Full.Histograms, "samples_too_old", res.TooOld.Samples+res.TooOld.Histograms)
}

// truncate drops the segments every endpoint's saved position has passed,
// once they outweigh the checkpoint that replaces them.
// Truncating below the saved positions rather than the live ones keeps
// every saved position inside the WAL, so that a restart resumes exactly.
func (k *Keeper) truncate() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.writers) == 0 {
		return
	}
	low := k.writers[0].saved
	for _, w := range k.writers[1:] {
		if w.saved.Compare(low) < 0 {
			low = w.saved
		}
	}
	// Lazily: a checkpoint rewrites every series, so it waits until the
	// sent segments hold twice what it will; under wal.max_size, at most
	// until they reach a quarter of the cap, so that trimming finds sent
	// segments gone.
	if _, err := k.wal.TruncateLazily(low, k.maxSize/4); err != nil {
		k.logger.Warn("truncate WAL", "before", low.String(), "err", err)
	}
}

// Package wal is rwagent's write-ahead log: scrapes append batches of
// series and samples, remote-write queues tail it with Readers, and
// Truncate drops what every queue has sent. It is built on Prometheus'
// tsdb/wlog segments and tsdb/record encoding, so its directory has the
// layout of a Prometheus agent WAL.
package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/prometheus/prometheus/util/compression"

	"github.com/rwagent/rwagent/pkg/metricset"
)

// ErrClosed is returned by Log, Truncate and Close once the WAL is closed,
// by Reader.Next once a Reader has read everything a closed WAL holds, and
// by Reader.Next after Reader.Close.
var ErrClosed = errors.New("wal: closed")

// FsyncPolicy says when logged records are made durable with fsync.
type FsyncPolicy string

const (
	// FsyncAlways syncs before Log returns: nothing acknowledged is lost
	// on power failure, at the cost of one fsync per Log.
	FsyncAlways FsyncPolicy = "always"
	// FsyncInterval syncs every Options.FsyncInterval in Run: a power
	// failure loses at most that much. A process crash loses nothing,
	// since every Log has written its records to the OS.
	FsyncInterval FsyncPolicy = "interval"
	// FsyncNever syncs only when a segment is finished and on Close.
	FsyncNever FsyncPolicy = "never"
)

const (
	// DefaultSegmentSize is wlog's 128MiB: few files, and a truncation
	// frees disk in steps small against a WAL that buffers an outage.
	DefaultSegmentSize = wlog.DefaultSegmentSize
	// DefaultFsyncInterval bounds loss on power failure to one second of
	// samples for one fsync per second, whatever the ingest rate.
	DefaultFsyncInterval = time.Second
	// pageSize is wlog's page; a segment holds whole pages.
	pageSize = 32 * 1024
)

// Options configures Open. Zero values of the optional fields mean the
// defaults given on each field.
type Options struct {
	Dir           string        // required; created if missing
	SegmentSize   int           // bytes, a multiple of 32KiB; zero: DefaultSegmentSize
	Fsync         FsyncPolicy   // zero: FsyncInterval
	FsyncInterval time.Duration // used with FsyncInterval; zero: DefaultFsyncInterval
	// MinAge keeps segments last written less than MinAge ago from
	// Truncate, even when every Reader has passed them (Prometheus agent's
	// min_wal_time). Trim does not heed it. Zero: no minimum.
	MinAge time.Duration
}

// withDefaults returns o with its zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.Fsync == "" {
		o.Fsync = FsyncInterval
	}
	if o.FsyncInterval == 0 {
		o.FsyncInterval = DefaultFsyncInterval
	}
	return o
}

// Validate reports the first invalid field of o, after defaults.
func (o Options) Validate() error {
	o = o.withDefaults()
	if o.Dir == "" {
		return errors.New("wal dir is empty")
	}
	if o.SegmentSize < pageSize || o.SegmentSize%pageSize != 0 {
		return fmt.Errorf("wal segment size %d is not a positive multiple of %d", o.SegmentSize, pageSize)
	}
	switch o.Fsync {
	case FsyncAlways, FsyncInterval, FsyncNever:
	default:
		return fmt.Errorf("wal fsync policy %q is not one of %q, %q, %q", o.Fsync, FsyncAlways, FsyncInterval, FsyncNever)
	}
	if o.FsyncInterval < 0 {
		return fmt.Errorf("wal fsync interval %s is negative", o.FsyncInterval)
	}
	if o.MinAge < 0 {
		return fmt.Errorf("wal min age %s is negative", o.MinAge)
	}
	return nil
}

// WAL is the write-ahead log. Log, NewRef, Release, NewReader and Truncate
// are safe for concurrent use. Build it with Open; the zero value is not
// usable. After Close, Log and Truncate return ErrClosed, Release does
// nothing, and Readers read what is left and then return ErrClosed.
type WAL struct {
	opts    Options
	dir     string
	logger  *slog.Logger
	metrics *walMetrics
	lrm     *wlog.LiveReaderMetrics // for LiveReaders; never registered

	nextRef     atomic.Uint64 // last ref handed out
	openSegment int           // the segment Open started writing; set by Open, then read-only
	closed      atomic.Bool   // set under mu; read without it

	// mu serialises the calls into wl that touch its active segment (Log,
	// NextSegment, Close), and closing. Open's replay and repair run before
	// anything else can; Truncate's calls only read wl's directory, and
	// take mu only to read wl. Take truncMu first, then mu.
	mu sync.Mutex
	wl *wlog.WL // replaced after a write error (fault.go); mu

	// After a failed write (see fault.go); all mu.
	failing      bool      // wl is not to be written again: the next write replaces it
	wlClosed     bool      // failing, and wl is closed
	tailCut      bool      // failing, and a record torn at the end of wl's segment is cut
	failedWrites int       // Log calls failed since failSince
	failSince    time.Time // first failure since the last successful write; zero: none

	// Test seams for write errors, nil outside tests; mu. logTo replaces
	// wl.Log(recs...); while replaceErr returns an error, replacing the
	// writer after a failed write fails with it (the disk is still full).
	logTo      func(wl *wlog.WL, recs [][]byte) error
	replaceErr func() error

	syncMu   sync.Mutex // serialises syncSegments
	syncFrom int        // lowest segment that may hold unsynced data (zero: all may, e.g. after a repair); syncMu

	readersMu sync.RWMutex
	readers   []chan struct{} // wake-up of each open Reader; readersMu

	truncMu  sync.Mutex // serialises Truncate and Trim, and Close behind them
	released released   // see truncate.go
	trimmed  trimmed    // see trim.go

	// seriesBytes counts the bytes of series and metadata records logged
	// since the last checkpoint started: with the checkpoint's size, an
	// upper bound of the next checkpoint's (see TruncateLazily).
	seriesBytes atomic.Int64
}

// Open opens the WAL in opts.Dir, creating it if needed. It finishes an
// interrupted truncation, repairs damage, cutting only what is damaged (a
// missing segment is replaced by an empty one, a damaged stretch is zeroed
// up to the next page, a segment that ends inside a record is cut after
// its last whole one; see damage.go), and replays the checkpoint and
// segments to continue refs above the highest one logged. What repairs
// cut is logged, counted, and reported by the Readers that reach it.
// Series logged before Open count as released (see Release): only this
// process hands out refs that get new samples.
//
// Open starts no goroutine of its own (wlog.NewSize starts one inside
// wlog, which Close stops). logger may be nil. reg may be nil; the
// rwagent_wal_* metrics registered on it are unregistered by Close.
func Open(opts Options, logger *slog.Logger, reg prometheus.Registerer) (*WAL, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "wal", "dir", opts.Dir)
	if err := os.MkdirAll(opts.Dir, 0o777); err != nil {
		return nil, fmt.Errorf("create wal dir %s: %w", opts.Dir, err)
	}
	w := &WAL{
		opts:   opts,
		dir:    filepath.Clean(opts.Dir),
		logger: logger,
		lrm:    wlog.NewLiveReaderMetrics(nil),
	}
	w.metrics = newWALMetrics(reg, w)
	if err := w.metrics.register(); err != nil {
		return nil, fmt.Errorf("open wal %s: %w", w.dir, err)
	}
	if err := w.open(); err != nil {
		if w.wl != nil {
			_ = w.wl.Close() // the error that matters is err
		}
		w.metrics.unregister()
		return nil, err
	}
	return w, nil
}

// open does Open's work on disk.
func (w *WAL) open() error {
	if err := wlog.DeleteTempCheckpoints(w.logger, w.dir); err != nil {
		return fmt.Errorf("clean wal dir %s: %w", w.dir, err)
	}
	if err := w.trimmed.load(w.dir); err != nil {
		w.logger.Warn("what trimmed or cut segments held is unknown: an endpoint resuming before them will not count its loss", "err", err)
	}
	// Holes first: wlog refuses a WAL with one.
	_, _, holes, err := segmentRange(w.dir)
	if err != nil {
		return err
	}
	if holes {
		if err := w.fillHoles(); err != nil {
			return err
		}
	}
	if err := w.finishTruncation(); err != nil {
		return err
	}
	// Replay and repair before the writer starts, so that every segment
	// they read is finished.
	start := time.Now()
	maxRef, err := w.replay(holes)
	if err != nil {
		return err
	}
	// A nil registerer: the segment writer's own metrics would collide
	// with a second WAL on reg; ours cover what it counts.
	wl, err := wlog.NewSize(w.logger, nil, w.dir, w.opts.SegmentSize, compression.None)
	if err != nil {
		return fmt.Errorf("open wal segments in %s: %w", w.dir, err)
	}
	w.wl = wl
	w.metrics.replayDuration.Set(time.Since(start).Seconds())
	w.nextRef.Store(uint64(maxRef))

	_, last, err := wlog.Segments(w.dir)
	if err != nil {
		return fmt.Errorf("list segments in %s: %w", w.dir, err)
	}
	// Segments before the one just created hold the previous process's
	// series: none gets samples again, so the checkpoint covering them
	// may drop them.
	w.released.prevMaxRef = maxRef
	w.released.prevLastSegment = last - 1
	w.openSegment = last
	w.logger.Info("opened WAL", "segment", last, "next_ref", maxRef+1, "replay_duration", time.Since(start))
	return nil
}

// NewRef returns a series ref not used before, above every ref in the WAL
// when it was opened. It is safe for concurrent use.
func (w *WAL) NewRef() chunks.HeadSeriesRef {
	return chunks.HeadSeriesRef(w.nextRef.Add(1))
}

// Log appends the batch: one WAL record per non-empty kind, series first,
// written with one wlog call so that concurrent batches do not interleave.
// It encodes into r's scratch buffers and does not retain r. With
// FsyncAlways the records are on disk when Log returns. Log wakes Readers
// waiting at the end of the WAL. It is safe for concurrent use with other
// Records values. It returns ErrClosed after Close.
//
// When the write fails (disk full, read-only file system) Log returns the
// error and the batch counts as not logged, though its whole records may
// still reach the WAL once the disk takes them. Every later Log first
// moves to a new segment, and fails until that works: the WAL recovers by
// itself when the disk does, and Readers never see a torn record between
// whole ones (see fault.go).
func (w *WAL) Log(r *Records) error {
	if w.closed.Load() {
		return ErrClosed
	}
	recs := r.encode()
	if len(recs) == 0 {
		return nil
	}
	w.mu.Lock()
	if w.closed.Load() {
		w.mu.Unlock()
		return ErrClosed
	}
	err := w.write(recs)
	w.mu.Unlock()
	if err != nil {
		w.metrics.writeFailures.Inc()
		return fmt.Errorf("write %d records to wal %s: %w", len(recs), w.dir, err)
	}
	w.wakeReaders()
	w.metrics.count(r)
	w.seriesBytes.Add(int64(r.seriesBytes()))
	if w.opts.Fsync == FsyncAlways {
		_, err := w.syncSegments() // a hole is filled by a Reader or a truncation
		return err
	}
	return nil
}

// Close flushes the last page, syncs and closes the active segment, and
// unregisters the metrics. It waits for a running Truncate. Readers read on
// to the end and then return ErrClosed. Close after Close returns ErrClosed.
// After a failed write that has not recovered, Close returns the error of
// writing out what the writer kept if the disk still refuses it; wlog's
// writer goroutine is then left running.
func (w *WAL) Close() error {
	w.truncMu.Lock()
	defer w.truncMu.Unlock()
	w.mu.Lock()
	if w.closed.Load() {
		w.mu.Unlock()
		return ErrClosed
	}
	var err error
	if !w.wlClosed {
		// After a failed write this writes out what the writer kept,
		// if the disk takes it; if not, wlog's goroutine stays behind.
		err = w.wl.Close()
	}
	if err == nil && w.failing && !w.tailCut {
		err = w.cutTornTail() // else Open repairs it: this segment is the last
	}
	w.closed.Store(true)
	w.mu.Unlock()

	w.metrics.unregister()
	w.wakeReaders()
	if err != nil {
		return fmt.Errorf("close wal %s: %w", w.dir, err)
	}
	return nil
}

// addReader registers a Reader's wake-up channel, buffered with room for one.
func (w *WAL) addReader(c chan struct{}) {
	w.readersMu.Lock()
	w.readers = append(w.readers, c)
	w.readersMu.Unlock()
}

// removeReader forgets a wake-up channel added by addReader.
func (w *WAL) removeReader(c chan struct{}) {
	w.readersMu.Lock()
	defer w.readersMu.Unlock()
	for i, rc := range w.readers {
		if rc == c {
			last := len(w.readers) - 1
			w.readers[i] = w.readers[last]
			w.readers[last] = nil
			w.readers = w.readers[:last]
			return
		}
	}
}

// wakeReaders tells every Reader that data was written. A Reader that has a
// wake-up pending already needs no second one, so the send never blocks.
func (w *WAL) wakeReaders() {
	w.readersMu.RLock()
	for _, c := range w.readers {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	w.readersMu.RUnlock()
}

// walMetrics are the rwagent_wal_* metrics of one WAL.
type walMetrics struct {
	reg prometheus.Registerer
	all metricset.Set // every collector below

	records          [numKinds]prometheus.Counter // WAL records written, by kind
	entries          [numKinds]prometheus.Counter // series, samples, ... written, by kind
	bytes            prometheus.Counter
	writeFailures    prometheus.Counter
	fsyncDuration    prometheus.Histogram
	fsyncFailures    prometheus.Counter
	repairs          prometheus.Counter
	repairCutBytes   prometheus.Counter
	repairCutSamples prometheus.Counter
	truncations      prometheus.Counter
	truncateFails    prometheus.Counter
	replayDuration   prometheus.Gauge

	trimmedSegments prometheus.Counter
	trimmedSamples  *prometheus.CounterVec

	// Prometheus' remote-storage input metrics: in an agent, what comes
	// into remote storage is what the WAL logs.
	samplesIn, histogramsIn, exemplarsIn prometheus.Counter
	highestMillis                        atomic.Int64 // newest sample timestamp logged, ms; 0 for none
}

func newWALMetrics(reg prometheus.Registerer, w *WAL) *walMetrics {
	m := &walMetrics{reg: reg}
	// Built unregistered; register adds them all or none, so that
	// unregister removes exactly what was added.
	f := promauto.With(nil)
	records := f.NewCounterVec(prometheus.CounterOpts{
		Name: "rwagent_wal_records_written_total",
		Help: "WAL records written, by type.",
	}, []string{"type"})
	entries := f.NewCounterVec(prometheus.CounterOpts{
		Name: "rwagent_wal_entries_written_total",
		Help: "Series, samples, histograms, float histograms, exemplars and metadata entries written to the WAL, by type.",
	}, []string{"type"})
	for k := range numKinds {
		m.records[k] = records.WithLabelValues(k.name())
		m.entries[k] = entries.WithLabelValues(k.name())
	}
	m.bytes = f.NewCounter(prometheus.CounterOpts{
		Name: "rwagent_wal_bytes_written_total",
		Help: "Bytes of encoded WAL records written, before page headers.",
	})
	m.writeFailures = f.NewCounter(prometheus.CounterOpts{
		Name: "rwagent_wal_write_failures_total",
		Help: "Log calls that failed to write to the WAL.",
	})
	m.fsyncDuration = f.NewHistogram(prometheus.HistogramOpts{
		Name:    "rwagent_wal_fsync_duration_seconds",
		Help:    "Duration of WAL fsyncs done by the fsync policy.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8), // 100µs to 1.6s
	})
	m.fsyncFailures = f.NewCounter(prometheus.CounterOpts{
		Name: "rwagent_wal_fsync_failures_total",
		Help: "WAL fsyncs that failed.",
	})
	m.repairs = f.NewCounter(prometheus.CounterOpts{
		Name: "rwagent_wal_corruptions_repaired_total",
		Help: "Damaged WAL segments repaired (damaged stretches cut) and missing segments replaced by empty ones.",
	})
	m.repairCutBytes = f.NewCounter(prometheus.CounterOpts{
		Name: "rwagent_wal_repair_cut_bytes_total",
		Help: "Bytes of WAL segments cut by repairs, from the damage to the next intact page or the end of the segment.",
	})
	m.repairCutSamples = f.NewCounter(prometheus.CounterOpts{
		Name: "rwagent_wal_repair_cut_samples_total",
		Help: "Upper bound of the samples and histograms in what repairs cut or found missing (a missing segment counts as a full one); each remote_write that had not sent them counts them in prometheus_remote_storage_samples_dropped_total{reason=\"wal_corrupt\"}.",
	})
	m.truncations = f.NewCounter(prometheus.CounterOpts{
		Name: "rwagent_wal_truncations_total",
		Help: "WAL truncations that checkpointed and removed segments.",
	})
	m.truncateFails = f.NewCounter(prometheus.CounterOpts{
		Name: "rwagent_wal_truncation_failures_total",
		Help: "WAL truncations that failed.",
	})
	m.replayDuration = f.NewGauge(prometheus.GaugeOpts{
		Name: "rwagent_wal_replay_duration_seconds",
		Help: "Time Open took to repair and replay the WAL.",
	})
	m.trimmedSegments = f.NewCounter(prometheus.CounterOpts{
		Name: "rwagent_wal_trimmed_segments_total",
		Help: "WAL segments removed by wal.max_size or wal.max_age, whether sent or not.",
	})
	m.trimmedSamples = f.NewCounterVec(prometheus.CounterOpts{
		Name: "rwagent_wal_trimmed_samples_total",
		Help: "Samples and native histograms in WAL segments removed by wal.max_size (reason wal_full) or wal.max_age (too_old), sent or not; each remote_write counts what it had not sent in prometheus_remote_storage_samples_dropped_total.",
	}, []string{"reason"})
	m.trimmedSamples.WithLabelValues(reasonFull)
	m.trimmedSamples.WithLabelValues(reasonTooOld)
	segment := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rwagent_wal_segment_current",
		Help: "Index of the WAL segment being written.",
	}, func() float64 {
		_, last, _, err := segmentRange(w.dir)
		if err != nil {
			return -1
		}
		return float64(last)
	})
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rwagent_wal_storage_size_bytes",
		Help: "Size of the WAL directory.",
	}, func() float64 {
		n, err := dirSize(w.dir)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	m.samplesIn = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_remote_storage_samples_in_total",
		Help: "Samples logged to the WAL, which every remote_write reads: compare to the samples out of the queues.",
	})
	m.histogramsIn = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_remote_storage_histograms_in_total",
		Help: "Histogram samples (integer and float) logged to the WAL, which every remote_write reads.",
	})
	m.exemplarsIn = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_remote_storage_exemplars_in_total",
		Help: "Exemplars logged to the WAL, which every remote_write reads.",
	})
	highest := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "prometheus_remote_storage_highest_timestamp_in_seconds",
		Help: "Highest sample timestamp logged to the WAL, in seconds since epoch; 0 until the first sample. One series for all remote_writes, as in Prometheus.",
	}, func() float64 { return float64(m.highestMillis.Load()) / 1000 })
	m.all.Add(
		m.samplesIn, m.histogramsIn, m.exemplarsIn, highest,
		records, entries, m.bytes, m.writeFailures, m.fsyncDuration, m.fsyncFailures,
		m.repairs, m.repairCutBytes, m.repairCutSamples, m.truncations, m.truncateFails, m.replayDuration, segment, size,
		m.trimmedSegments, m.trimmedSamples,
	)
	return m
}

// register registers every metric on the Registerer given to
// newWALMetrics, or none.
func (m *walMetrics) register() error { return m.all.Register(m.reg) }

// count adds a logged batch to the write metrics.
func (m *walMetrics) count(r *Records) {
	var bytes int
	for i, rec := range r.recs[:r.n] {
		m.records[r.kind[i]].Inc()
		bytes += len(rec)
	}
	m.bytes.Add(float64(bytes))
	for _, k := range [...]kind{kindSeries, kindMetadata, kindSamples, kindHistograms, kindFloatHistograms, kindExemplars} {
		if n := r.entries(k); n > 0 {
			m.entries[k].Add(float64(n))
		}
	}
	if n := len(r.Samples); n > 0 {
		m.samplesIn.Add(float64(n))
	}
	if n := len(r.Histograms) + len(r.FloatHistograms); n > 0 {
		m.histogramsIn.Add(float64(n))
	}
	if n := len(r.Exemplars); n > 0 {
		m.exemplarsIn.Add(float64(n))
	}
	m.observeHighest(r)
}

// observeHighest raises highestMillis to the newest sample, histogram or
// float histogram timestamp of r.
func (m *walMetrics) observeHighest(r *Records) {
	t := int64(math.MinInt64)
	for i := range r.Samples {
		t = max(t, r.Samples[i].T)
	}
	for i := range r.Histograms {
		t = max(t, r.Histograms[i].T)
	}
	for i := range r.FloatHistograms {
		t = max(t, r.FloatHistograms[i].T)
	}
	for {
		cur := m.highestMillis.Load()
		if t <= cur || m.highestMillis.CompareAndSwap(cur, t) {
			return
		}
	}
}

// unregister removes what register registered.
func (m *walMetrics) unregister() { m.all.Unregister() }

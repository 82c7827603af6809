// Package remotewrite sends what the WAL holds to one remote_write endpoint
// with Prometheus remote-write 1.0, or 2.0 when protobuf_message asks for it
// (falling back to 1.0 when the receiver answers 415).
//
// A Queue tails the WAL with one reader goroutine, keeps a table of series
// (external labels merged, write_relabel_configs applied once per series),
// hashes each sample by series ref to a shard so per-series order holds, and
// lets each shard batch, encode (protobuf, snappy) and POST with retries.
// The number of shards follows the measured input and send rates between
// min_shards and max_shards (reshard.go); a batch over the request size
// limit, or refused with 413, is sent in halves (limits.go), and one refused
// with 400 for the data of some series is split until those series are
// isolated and dropped (shard.go).
// Acked reports the WAL position before which everything was delivered or
// dropped, for WAL truncation.
package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/rwagent/rwagent/pkg/lograte"
	"github.com/rwagent/rwagent/pkg/wal"
)

const (
	// DefaultFlushDeadline is how long Run keeps sending after its ctx is
	// done. It is Prometheus' --storage.remote.flush-deadline default: room
	// for one full default remote_timeout (30s) plus several max_backoff
	// (5s) retries. A shorter one loses nothing (unsent samples stay in the
	// WAL behind Acked); they are only sent again after a restart.
	DefaultFlushDeadline = time.Minute
	// DefaultUserAgent is sent when Options.UserAgent is empty.
	DefaultUserAgent = "rwagent"
)

// Options configure a Queue. Config and Log are required.
type Options struct {
	// Name is the remote_name metric label and the name in logs. Zero
	// means Config.Name.
	Name string
	// Config is the remote_write block. Its queue_config must pass
	// QueueConfig.Validate; a zero batch_send_deadline or min_backoff
	// means Prometheus' default. protobuf_message
	// io.prometheus.write.v2.Request sends remote-write 2.0 until the
	// receiver answers 415 (or a 2xx without written counts), then 1.0
	// for the rest of the Queue's life. sigv4 is not read: requests are
	// signed by Transport (see Signed).
	// metadata_config is honoured: with send (the default) the latest
	// metadata of each metric family is sent as 1.0 metadata every
	// send_interval, and with each 2.0 series.
	// queue_config.retry_on_http_429 is honoured as it is (pkg/config
	// defaults it to true). A zero sample_age_limit means
	// Limits.SampleAgeLimit. Config must not change while the Queue
	// exists.
	Config *config.RemoteWriteConfig
	// ExternalLabels are added to every series that lacks them, before
	// write relabeling. They must be sorted (labels.Labels always are).
	ExternalLabels labels.Labels
	// Log is the WAL to tail.
	Log Log
	// Start is where reading starts: samples before it are not sent.
	// Zero means the start of the WAL.
	Start wal.Position
	// ResendUntil is the sent high-water mark of the run before a restart
	// (see PositionWriter): the samples of records that start at or after
	// Start and before it may have reached the receiver already, and are
	// counted in rwagent_remote_write_resent_samples_total as they are
	// queued. Zero, or not after Start, means none.
	ResendUntil wal.Position
	// Lost, when set, is what the WAL removed of this endpoint's unsent
	// data before the queue started (wal.WAL.Resume's *wal.GapError): Run
	// counts it as dropped, by reason, before it reads.
	Lost *wal.GapError
	// Positions, when set, is told the acknowledged position and the sent
	// high-water mark as they move. Nil means nobody is.
	Positions PositionWriter
	// Transport sends every request, signing included: remotewrite
	// signs nothing itself. Zero means an unsigned one built from
	// Config.HTTPClientConfig. Whatever it is, redirects are checked
	// before it sees them (only a 307 or 308 to the same scheme and
	// host is followed, and only with follow_redirects).
	Transport http.RoundTripper
	// Signed says Transport signs every request with SigV4. Then 401,
	// 403 and 404 mean credentials, a role or a workspace not ready yet:
	// the batch is kept and retried instead of dropped. Signed needs a
	// Transport, and a Config with a sigv4 block needs Signed: New
	// refuses either alone rather than send unsigned what was meant to
	// be signed.
	Signed bool
	// Limits are the receiver's, enforced before sending. Zero means
	// none (AMPLimits are AMP's).
	Limits Limits
	// UserAgent is sent with every request; zero means DefaultUserAgent.
	UserAgent string
	// FlushDeadline bounds how long Run sends after its ctx is done. Zero
	// means DefaultFlushDeadline.
	FlushDeadline time.Duration
	// Logger gets the queue's logs. Zero means none.
	Logger *slog.Logger
	// Registerer gets the queue's metrics while Run runs. Nil means the
	// metrics are kept but not registered.
	Registerer prometheus.Registerer
}

// Queue sends the samples of one WAL to one remote_write endpoint. Create it
// with New, run it once with Run. Acked is safe for concurrent use at any
// time, also after Run has returned.
type Queue struct {
	name           string
	log            Log
	start          wal.Position
	lostAtStart    *wal.GapError // Options.Lost
	client         *client
	logger         *slog.Logger
	metrics        *queueMetrics
	flushDeadline  time.Duration
	maxPerSend     int
	batchDeadline  time.Duration
	minBackoff     time.Duration
	maxBackoff     time.Duration
	ageLimit       time.Duration // sample_age_limit, else Limits.SampleAgeLimit; zero: no limit
	futureLimit    time.Duration // how far ahead a timestamp may be (Limits.MaxFuture); zero: no limit
	sendExemplars  bool
	sendHistograms bool

	// shards is the current generation's shards. The reader goroutine is
	// its only writer and replaces it, under acks.mu, only after the old
	// generation has drained (see reshard); Acked reads it under acks.mu.
	shards []*shard
	gen    *generation // owned by the reader
	acks   *acks

	progress      progress
	resendMetrics *resendMetrics

	// Resharding: capacity is each shard's ring size; numShards mirrors
	// len(shards) for the resharding goroutine, which sends counts to the
	// reader on reshardCh (capacity 1, newest wins).
	capacity             int
	minShards, maxShards int
	numShards            atomic.Int32
	reshardEvery         time.Duration
	reshardCh            chan int
	rates                shardRates

	// metadata sends families as 1.0 metadata; nil when
	// metadata_config.send is false, and then Metadata records are not
	// read and 2.0 series carry none.
	metadata *metadataSender
	families *families

	// Owned by the reader goroutine.
	series *seriesTable
	// released is the reader's scratch for refs the WAL released.
	released []chunks.HeadSeriesRef
	stage    []staging
	cur      current

	// maxBytes is the request size limit.
	maxBytes int
	// split413Floor: a half of a part split for a 413 that is refused
	// again while under this size stops the splitting (shard.refused).
	split413Floor int

	// v2 is set while the queue sends remote-write 2.0: from New when
	// protobuf_message asks for it, until the receiver shows it only
	// speaks 1.0 (fallBackToV1). It never goes back to true.
	v2 atomic.Bool

	rejectLog                                  map[string]*lograte.Limiter // by reason; fixed in New
	retryLog, unknownLog, readErrLog, limitLog lograte.Limiter
	lengthLog, metadataLog, misconfigLog       lograte.Limiter

	ran atomic.Bool
	// handover, when set, replaces the flush deadline (see Handover).
	handover atomic.Int64
}

// Handover bounds the flush that follows the end of Run's ctx to d
// instead of the flush deadline: for a queue replaced by another that
// resumes at its Acked position, what it does not flush in d is sent by
// its successor (what was in flight counting as resent), so a receiver
// that is down does not hold the replacement up for the whole deadline.
// Call it before ctx ends.
func (q *Queue) Handover(d time.Duration) { q.handover.Store(int64(max(d, 0)) + 1) }

// New validates opts and builds a Queue. ctx bounds setting up the HTTP
// transport when opts.Transport is zero. New starts nothing.
func New(ctx context.Context, opts Options) (*Queue, error) {
	cfg := opts.Config
	if cfg == nil || cfg.URL == nil {
		return nil, errors.New("remotewrite: config with a url is required")
	}
	if opts.Log == nil {
		return nil, errors.New("remotewrite: log is required")
	}
	switch cfg.ProtobufMessage {
	case "", remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType:
	default:
		return nil, fmt.Errorf("remote_write %s: protobuf_message %q is not supported, only %s and %s",
			cfg.URL.Redacted(), cfg.ProtobufMessage, remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType)
	}
	qc := cfg.QueueConfig
	if err := qc.Validate(); err != nil {
		return nil, fmt.Errorf("remote_write %s: %w", cfg.URL.Redacted(), err)
	}
	name := opts.Name
	if name == "" {
		name = cfg.Name
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("remote_name", name, "url", cfg.URL.Redacted())
	ua := opts.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	switch {
	case opts.Signed && opts.Transport == nil:
		return nil, fmt.Errorf("remote_write %s: signed requests need the signing transport (Options.Transport)", cfg.URL.Redacted())
	case cfg.SigV4Config != nil && !opts.Signed:
		return nil, fmt.Errorf("remote_write %s: sigv4 is not honoured here: remotewrite does not sign; pass a signing Options.Transport and set Options.Signed", cfg.URL.Redacted())
	}
	cl, err := newClient(ctx, cfg, opts.Transport, ua, opts.Signed)
	if err != nil {
		return nil, err
	}
	q := &Queue{
		name:           name,
		log:            opts.Log,
		start:          opts.Start,
		client:         cl,
		logger:         logger,
		flushDeadline:  opts.FlushDeadline,
		maxPerSend:     qc.MaxSamplesPerSend,
		batchDeadline:  time.Duration(qc.BatchSendDeadline),
		minBackoff:     time.Duration(qc.MinBackoff),
		maxBackoff:     time.Duration(qc.MaxBackoff),
		ageLimit:       time.Duration(qc.SampleAgeLimit),
		futureLimit:    opts.Limits.MaxFuture,
		sendExemplars:  cfg.SendExemplars,
		sendHistograms: cfg.SendNativeHistograms,
		acks:           newAcks(opts.Start, opts.ResendUntil),
		lostAtStart:    opts.Lost,
		series:         newSeriesTable(newPairTable(), opts.ExternalLabels, cfg.WriteRelabelConfigs),
		rejectLog:      map[string]*lograte.Limiter{},
		limitLog:       lograte.Limiter{Interval: 10 * time.Second, Level: slog.LevelError},
		lengthLog:      lograte.Limiter{Interval: 10 * time.Second, Level: slog.LevelError},
		metadataLog:    lograte.Limiter{Interval: 10 * time.Second, Level: slog.LevelError},
		families:       newFamilies(),
		maxBytes:       DefaultMaxRequestBytes,
		split413Floor:  split413Floor,
		misconfigLog:   lograte.Limiter{Interval: 10 * time.Second, Level: slog.LevelError},
		retryLog:       lograte.Limiter{Interval: 10 * time.Second, Level: slog.LevelWarn},
		unknownLog:     lograte.Limiter{Interval: 10 * time.Second, Level: slog.LevelWarn},
		readErrLog:     lograte.Limiter{Interval: 10 * time.Second, Level: slog.LevelError},
	}
	q.v2.Store(cfg.ProtobufMessage == remoteapi.WriteV2MessageType)
	if cfg.MetadataConfig.Send {
		q.metadata = newMetadataSender(q, cfg.MetadataConfig)
	}
	for _, r := range rejectReasons {
		q.rejectLog[r] = &lograte.Limiter{Interval: 10 * time.Second, Level: slog.LevelError}
	}
	q.series.limits = opts.Limits.series()
	q.series.route = cfg.Name
	if q.ageLimit <= 0 {
		q.ageLimit = opts.Limits.SampleAgeLimit
	}
	if q.flushDeadline <= 0 {
		q.flushDeadline = DefaultFlushDeadline
	}
	// Zero would mean sending partial batches at once, or retrying in a
	// tight loop: take Prometheus' defaults instead.
	if q.batchDeadline <= 0 {
		q.batchDeadline = time.Duration(config.DefaultQueueConfig.BatchSendDeadline)
	}
	if q.minBackoff <= 0 {
		q.minBackoff = time.Duration(config.DefaultQueueConfig.MinBackoff)
	}
	q.maxBackoff = max(q.maxBackoff, q.minBackoff)
	// Start at min_shards as Prometheus does; resharding moves between
	// min_shards and max_shards.
	q.maxShards = max(qc.MaxShards, 1)
	q.minShards = min(q.maxShards, max(qc.MinShards, 1))
	q.reshardEvery = shardUpdateEvery
	q.reshardCh = make(chan int, 1)
	// The ring must hold a full batch, or a shard below
	// max_samples_per_send would only ever send at the deadline.
	q.capacity = max(qc.Capacity, qc.MaxSamplesPerSend)
	var lagBytes func() float64
	if sl, ok := opts.Log.(SizedLog); ok {
		lagBytes = func() float64 {
			n, err := sl.BytesAfter(q.Acked())
			if err != nil {
				return math.NaN()
			}
			return float64(n)
		}
	}
	q.metrics = newQueueMetrics(opts.Registerer, name, cfg.URL.Redacted(), lagBytes)
	q.resendMetrics = newResendMetrics(opts.Registerer, name, cfg.URL.Redacted())
	q.progress.w = opts.Positions
	// Never write a sent mark below the last run's: if this run dies
	// before it resends those records, the next restart must count them.
	q.progress.acked = opts.Start
	q.progress.sent = opts.Start.Max(opts.ResendUntil)
	q.installShards(q.minShards)
	q.metrics.shardsMin.Set(float64(qc.MinShards))
	q.metrics.shardsMax.Set(float64(qc.MaxShards))
	q.metrics.shardsDesired.Set(float64(q.minShards))
	q.metrics.shardCapacity.Set(float64(q.capacity))
	q.metrics.maxSamplesPerSend.Set(float64(qc.MaxSamplesPerSend))
	return q, nil
}

// Run reads the WAL from Options.Start and sends until ctx is done. Then it
// stops reading, sends what is queued for at most the flush deadline,
// cancels what is still in flight and returns nil. Samples left unsent stay
// in the WAL behind Acked, and are logged. If the WAL is closed first, Run
// sends everything read and returns once it is delivered (or dropped), or
// the flush deadline after ctx is done. Run registers the queue's metrics
// and unregisters them before it returns, so a new Queue for the same
// endpoint can follow. It returns an error only if the metrics cannot be
// registered or the WAL reader cannot be opened. Run must be called once.
func (q *Queue) Run(ctx context.Context) error {
	if !q.ran.CompareAndSwap(false, true) {
		return errors.New("remotewrite: Run called twice")
	}
	if err := q.metrics.register(); err != nil {
		return fmt.Errorf("register metrics of remote write %s: %w", q.name, err)
	}
	defer q.metrics.unregister()
	if err := q.resendMetrics.register(); err != nil {
		return fmt.Errorf("register metrics of remote write %s: %w", q.name, err)
	}
	defer q.resendMetrics.unregister()
	defer q.client.hc.CloseIdleConnections()
	r, err := q.log.NewReader(q.start)
	if err != nil {
		return fmt.Errorf("open wal reader for remote write %s at %+v: %w", q.name, q.start, err)
	}
	defer r.Close()

	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()
	q.runShards(sendCtx)
	reshardCtx, stopResharding := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { q.reshardLoop(reshardCtx) })
	if q.metadata != nil {
		wg.Go(func() { q.metadata.run(reshardCtx) })
	}
	if q.lostAtStart != nil {
		q.lost(q.lostAtStart)
	}
	q.read(ctx, sendCtx, r)
	stopResharding()
	wg.Wait()

	// Stop softly: shards send what is queued, then return. Once ctx is
	// done (it may not be, when the WAL was closed), they get the flush
	// deadline before what is in flight is cancelled.
	done := q.stopShards()
	select {
	case <-done:
	case <-ctx.Done():
		deadline := q.flushDeadline
		if h := q.handover.Load(); h > 0 {
			deadline = time.Duration(h - 1)
		}
		t := time.NewTimer(deadline)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			cancelSend()
			<-done
		}
	}
	// No shard runs any more: give the series' pairs back to the pair
	// table, and free its index (the queue made the table; no one interns
	// into it again).
	q.series.close()
	q.series.pairs.freeIndex()
	unsent := 0
	for _, s := range q.shards {
		unsent += s.pending()
	}
	if unsent > 0 {
		q.logger.Warn("remote write stopped with samples unsent; they stay in the WAL", "unsent", unsent, "acked", q.Acked())
	}
	return nil
}

// Acked returns the WAL position before which every sample has been
// delivered or dropped: the start of the oldest record with a sample still
// queued or in flight, or the position after the last record read when none
// is. It never goes below Options.Start. It is safe for concurrent use.
func (q *Queue) Acked() wal.Position {
	a := q.acks
	a.mu.Lock()
	defer a.mu.Unlock()
	var oldest uint64
	ok := false
	for _, s := range q.shards {
		if seq, has := s.oldest(); has && (!ok || seq < oldest) {
			oldest, ok = seq, true
		}
	}
	return a.positionLocked(oldest, ok)
}

// fallBackToV1 switches the queue to remote-write 1.0 for good, logging it
// once. why describes the answer that showed the receiver only speaks 1.0.
// Safe for concurrent use.
func (q *Queue) fallBackToV1(why string) {
	if q.v2.CompareAndSwap(true, false) {
		q.logger.Warn("receiver does not accept remote write 2.0, falling back to 1.0 for this queue", "answer", why)
	}
}

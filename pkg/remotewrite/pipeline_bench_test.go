package remotewrite

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	rwconfig "github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/sendpos"
	"github.com/rwagent/rwagent/pkg/wal"
)

// livePositions writes positions to a live file, as rwagent does.
type livePositions struct{ l *sendpos.Live }

func (p livePositions) WritePositions(acked, sent wal.Position) {
	_ = p.l.Write(sendpos.State{Acked: acked, Sent: sent, SentKnown: true})
}

// BenchmarkWALToWire is the send side of the per-sample path: read a real
// WAL, resolve series, shard, batch, encode remote-write 1.0, snappy and
// POST to a loopback receiver that only drains the body (so the receiver's
// decoding is not measured). Each iteration sends the whole WAL once. The
// -positions variants also write the send positions to a live file
// (sendpos.Live), as rwagent does. These send 100 samples a request
// (testConfig).
//
// The rw1.0 and rw2.0 variants compare the protocols on the same WAL,
// with each one's default max_samples_per_send (2,000 and 10,000) and
// the WAL's metadata records, as a scrape logs them, sent as 2.0 sends
// them (metadata_config.send, the default): the cost per sample of 2.0
// over 1.0 on the send side. The receiver answers a 2.0 request with a
// samples-written count no request reaches, so nothing counts as dropped.
func BenchmarkWALToWire(b *testing.B) {
	const scrapes = 50
	for _, bc := range []struct {
		series    int
		positions bool
		proto     string // "": 1.0 at testConfig's 100 samples a request
	}{
		{1_000, false, ""}, {10_000, false, ""}, {1_000, true, ""}, {10_000, true, ""},
		{10_000, false, "1.0"}, {10_000, false, "2.0"},
	} {
		series := bc.series
		name := fmt.Sprint(series)
		if bc.positions {
			name += "-positions"
		}
		if bc.proto != "" {
			name += "-rw" + bc.proto
		}
		b.Run(name, func(b *testing.B) {
			w, err := wal.Open(wal.Options{Dir: b.TempDir(), Fsync: wal.FsyncNever}, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			var recs wal.Records
			refs := make([]chunks.HeadSeriesRef, series)
			for i := range refs {
				refs[i] = w.NewRef()
				recs.Series = append(recs.Series, record.RefSeries{Ref: refs[i], Labels: labels.FromStrings(
					"__name__", fmt.Sprintf("bench_metric_%d", i%100), "instance", "10.0.0.1:9100", "job", "node",
					"path", fmt.Sprintf("/api/v1/item/%d", i))})
				if bc.proto != "" {
					recs.Metadata = append(recs.Metadata, record.RefMetadata{Ref: refs[i], Type: uint8(record.Counter), Help: "Items served."})
				}
			}
			base := nowMs()
			for s := range scrapes {
				for _, ref := range refs {
					recs.Samples = append(recs.Samples, record.RefSample{Ref: ref, T: base + int64(s)*15_000, V: float64(s)})
				}
				if err := w.Log(&recs); err != nil {
					b.Fatal(err)
				}
				recs.Reset()
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			var bytes int64
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				n, _ := io.Copy(io.Discard, r.Body)
				bytes += n // one request at a time per shard; read after Run only
				if bc.proto == "2.0" {
					rw.Header().Set(samplesWritten, "1000000000")
				}
			}))
			defer srv.Close()
			cfg := testConfig(b, srv.URL, func(c *config.RemoteWriteConfig) {
				c.QueueConfig.MinShards, c.QueueConfig.MaxShards = 1, 1
				switch bc.proto {
				case "1.0":
					c.QueueConfig.MaxSamplesPerSend = config.DefaultQueueConfig.MaxSamplesPerSend
				case "2.0":
					c.ProtobufMessage = remoteapi.WriteV2MessageType
					c.QueueConfig.MaxSamplesPerSend = rwconfig.DefaultMaxSamplesPerSendV2
				}
				if bc.proto != "" {
					c.QueueConfig.Capacity = config.DefaultQueueConfig.Capacity
				}
			})
			b.ReportAllocs()
			b.ResetTimer()
			var positions PositionWriter
			if bc.positions {
				live, err := sendpos.New(b.TempDir()).OpenLive("bench")
				if err != nil {
					b.Fatal(err)
				}
				defer live.Close()
				positions = livePositions{live}
			}
			for b.Loop() {
				q, err := New(context.Background(), Options{Config: cfg, Log: WALLog(w), Positions: positions})
				if err != nil {
					b.Fatal(err)
				}
				if err := q.Run(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			samples := float64(b.N * series * scrapes)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/samples, "ns/sample")
			b.ReportMetric(float64(bytes)/samples, "wire-bytes/sample")
		})
	}
}

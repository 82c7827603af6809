package floor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwagent/rwagent/bench/loadgen"
	"github.com/rwagent/rwagent/pkg/sigv4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// isolateAWS keeps the machine's AWS profile and files out of the static
// credentials the floor signs with.
func isolateAWS(tb testing.TB) {
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"} {
		tb.Setenv(k, "")
	}
	tb.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	tb.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
}

// nopTransport answers every request with 204 and reads nothing.
type nopTransport struct{}

func (nopTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody}, nil
}

// pipeline is the minimal per-sample path: a parse cache from the series'
// text to its index in the request (as a scrape cache does), one reused
// request, reused marshal and snappy buffers.
type pipeline struct {
	st     *labels.SymbolTable
	index  map[string]int // series text → index in req.Timeseries
	req    prompb.WriteRequest
	raw    []byte
	packed []byte
	rt     http.RoundTripper
	lset   labels.Labels
}

// run parses one scrape into the request (one sample per series), encodes,
// compresses, signs and "sends" it, and returns the samples parsed.
func (p *pipeline) run(ctx context.Context, body []byte, ts int64) (int, error) {
	parser, err := textparse.New(body, "text/plain; version=0.0.4", p.st, textparse.ParserOptions{})
	if err != nil {
		return 0, fmt.Errorf("new parser: %w", err)
	}
	n := 0
	for {
		e, err := parser.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("parse: %w", err)
		}
		if e != textparse.EntrySeries {
			continue
		}
		series, _, v := parser.Series()
		i, ok := p.index[string(series)]
		if !ok {
			parser.Labels(&p.lset)
			ts := prompb.TimeSeries{Samples: make([]prompb.Sample, 0, 1)}
			p.lset.Range(func(l labels.Label) {
				ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value})
			})
			i = len(p.req.Timeseries)
			p.req.Timeseries = append(p.req.Timeseries, ts)
			p.index[string(series)] = i
		}
		t := &p.req.Timeseries[i]
		t.Samples = append(t.Samples[:0], prompb.Sample{Value: v, Timestamp: ts})
		n++
	}
	size := p.req.Size()
	if cap(p.raw) < size {
		p.raw = make([]byte, size)
	}
	p.raw = p.raw[:size]
	if _, err := p.req.MarshalToSizedBuffer(p.raw); err != nil {
		return n, fmt.Errorf("marshal: %w", err)
	}
	p.packed = snappy.Encode(p.packed[:cap(p.packed)], p.raw)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-bench/api/v1/remote_write", bytes.NewReader(p.packed))
	if err != nil {
		return n, err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := p.rt.RoundTrip(req)
	if err != nil {
		return n, fmt.Errorf("sign and send: %w", err)
	}
	resp.Body.Close()
	return n, nil
}

// BenchmarkFloor reports ns/sample and wire-bytes/sample of the floor for
// one load-generator target of 1,000 and 10,000 series, one request per
// scrape (1,000 series is about Prometheus' max_samples_per_send).
func BenchmarkFloor(b *testing.B) {
	isolateAWS(b)
	for _, series := range []int{1_000, 10_000} {
		b.Run(fmt.Sprint(series), func(b *testing.B) {
			rt, err := sigv4.NewRoundTripper(b.Context(), sigv4.Config{Region: "us-east-1",
				AccessKey: "AKIDBENCHMARK", SecretKey: "bench-secret"}, nopTransport{}, sigv4.Options{})
			if err != nil {
				b.Fatal(err)
			}
			p := &pipeline{st: labels.NewSymbolTable(), index: map[string]int{}, rt: rt}
			tg := loadgen.NewTarget(series, 1)
			ts := int64(1_700_000_000_000)
			body, _ := tg.Scrape()
			if _, err := p.run(b.Context(), body, ts); err != nil { // fill the cache
				b.Fatal(err)
			}
			var samples, wire int
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				body, _ = tg.Scrape() // the generator's work is not the floor's
				ts += 5000
				b.StartTimer()
				n, err := p.run(b.Context(), body, ts)
				if err != nil {
					b.Fatal(err)
				}
				samples += n
				wire += len(p.packed)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(samples), "ns/sample")
			b.ReportMetric(float64(wire)/float64(samples), "wire-bytes/sample")
		})
	}
}

// TestFloorPipeline checks that the floor does the whole job: every
// series parsed once per scrape, a request that decodes back to them.
func TestFloorPipeline(t *testing.T) {
	isolateAWS(t)
	rt, err := sigv4.NewRoundTripper(t.Context(), sigv4.Config{Region: "us-east-1",
		AccessKey: "AKIDTEST", SecretKey: "test-secret"}, nopTransport{}, sigv4.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline{st: labels.NewSymbolTable(), index: map[string]int{}, rt: rt}
	tg := loadgen.NewTarget(300, 3)
	for scrape := range 2 {
		body, want := tg.Scrape()
		n, err := p.run(t.Context(), body, int64(scrape))
		if err != nil || n != want {
			t.Fatalf("scrape %d: parsed %d of %d samples: %v", scrape, n, want, err)
		}
		raw, err := snappy.Decode(nil, p.packed)
		if err != nil {
			t.Fatal(err)
		}
		var got prompb.WriteRequest
		if err := got.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		if len(got.Timeseries) != want || got.Timeseries[0].Samples[0].Timestamp != int64(scrape) || len(got.Timeseries[want-1].Labels) == 0 {
			t.Fatalf("scrape %d: request has %d series, want %d", scrape, len(got.Timeseries), want)
		}
	}
}

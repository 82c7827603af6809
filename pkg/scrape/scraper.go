package scrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"

	"github.com/rwagent/rwagent/pkg/wal"
)

// bufferPool shares scrape body buffers, gzip readers and WAL batches between
// the loops of a Manager, so that memory follows the scrapes in flight rather
// than the number of targets. Safe for concurrent use.
type bufferPool struct {
	bufs sync.Pool // *bytes.Buffer
	gzip sync.Pool // *gzip.Reader
	recs sync.Pool // *wal.Records
}

func (p *bufferPool) getRecords() *wal.Records {
	if r, ok := p.recs.Get().(*wal.Records); ok {
		return r
	}
	return new(wal.Records)
}

func (p *bufferPool) putRecords(r *wal.Records) {
	r.Reset()
	p.recs.Put(r)
}

func (p *bufferPool) getBuffer() *bytes.Buffer {
	if b, ok := p.bufs.Get().(*bytes.Buffer); ok {
		return b
	}
	return new(bytes.Buffer)
}

func (p *bufferPool) putBuffer(b *bytes.Buffer) {
	if b == nil {
		return
	}
	b.Reset()
	p.bufs.Put(b)
}

// scraper fetches the exposition of one target. It is used by one loop and
// is not safe for concurrent use.
type scraper struct {
	client        *http.Client
	req           *http.Request
	timeout       time.Duration
	bodySizeLimit int64 // 0: no limit
	pool          *bufferPool
}

type scraperOptions struct {
	client        *http.Client
	url           string
	accept        string
	compression   bool
	userAgent     string
	timeout       time.Duration
	bodySizeLimit int64
	pool          *bufferPool
}

func newScraper(o scraperOptions) (*scraper, error) {
	req, err := http.NewRequest(http.MethodGet, o.url, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("build scrape request: %w", err)
	}
	req.Header.Set("Accept", o.accept)
	if o.compression {
		req.Header.Set("Accept-Encoding", "gzip")
	} else {
		req.Header.Set("Accept-Encoding", "identity")
	}
	if o.userAgent != "" {
		req.Header.Set("User-Agent", o.userAgent)
	}
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(o.timeout.Seconds(), 'f', -1, 64))
	return &scraper{
		client:        o.client,
		req:           req,
		timeout:       o.timeout,
		bodySizeLimit: o.bodySizeLimit,
		pool:          o.pool,
	}, nil
}

// fetch GETs the exposition within the scrape timeout and returns the
// uncompressed body (owned by the caller, who returns it with
// pool.putBuffer) and its Content-Type. Errors do not contain the target URL:
// callers log it, redacted, beside them.
func (s *scraper) fetch(ctx context.Context) (*bytes.Buffer, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.client.Do(s.req.WithContext(ctx))
	if err != nil {
		return nil, "", s.wrap(ctx, "get metrics", err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("server returned HTTP status %s", resp.Status)
	}

	var r io.Reader = resp.Body
	if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		zr, _ := s.pool.gzip.Get().(*gzip.Reader)
		if zr == nil {
			zr = new(gzip.Reader)
		}
		defer s.pool.gzip.Put(zr)
		if err := zr.Reset(resp.Body); err != nil {
			return nil, "", s.wrap(ctx, "read gzip header", err)
		}
		r = zr
	}
	limit := s.bodySizeLimit
	if limit <= 0 {
		limit = 1<<63 - 2
	}
	buf := s.pool.getBuffer()
	if resp.ContentLength > 0 && resp.ContentLength <= limit && r == resp.Body {
		buf.Grow(int(resp.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		s.pool.putBuffer(buf)
		return nil, "", s.wrap(ctx, "read body", err)
	}
	if n > limit {
		s.pool.putBuffer(buf)
		return nil, "", fmt.Errorf("%w: response body is larger than %d bytes", ErrBodySizeLimit, limit)
	}
	return buf, resp.Header.Get("Content-Type"), nil
}

// wrap names the failed step, replaces a bare deadline error by the scrape
// timeout, and drops the URL that net/http puts into its errors.
func (s *scraper) wrap(ctx context.Context, what string, err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: scrape_timeout of %s exceeded: %w", what, s.timeout, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// acceptHeader lists protocols in order of preference with descending
// q-values, as Prometheus does, ending with */*.
func acceptHeader(protocols []config.ScrapeProtocol, escaping model.EscapingScheme) string {
	var sb strings.Builder
	weight := len(config.ScrapeProtocolsHeaders) + 1
	for _, p := range protocols {
		sb.WriteString(config.ScrapeProtocolsHeaders[p])
		if p == config.PrometheusText1_0_0 || p == config.OpenMetricsText1_0_0 || p == config.OpenMetricsText2_0_0 {
			sb.WriteString(";" + model.EscapingKey + "=" + escaping.String())
		}
		fmt.Fprintf(&sb, ";q=0.%d,", weight)
		weight--
	}
	fmt.Fprintf(&sb, "*/*;q=0.%d", weight)
	return sb.String()
}

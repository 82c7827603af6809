package scrape

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
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

// DefaultBodySizeLimit is the largest uncompressed scrape body read when a
// scrape config sets no body_size_limit (Prometheus reads any size). 64 MiB
// is four times vmagent's default (-promscrape.maxScrapeSize, 16 MiB): at
// about 150 bytes per series of text it holds some 400k series, enough for
// kube-state-metrics on a cluster of a few thousand nodes, while a body
// cut at the limit costs the limit once (see readBody). Set
// body_size_limit to raise or lower it for a job.
const DefaultBodySizeLimit = 64 << 20

// maxPooledBody is the capacity above which a body buffer is not kept for
// the next scrape: an outsized body (a big target, or a hostile one cut at
// the limit) is left to the garbage collector instead of being held by the
// pool and handed to targets that need a fraction of it.
const maxPooledBody = 8 << 20

// minBodyRead is the least a body buffer starts with.
const minBodyRead = 32 << 10

// bodyChunk is the size of the chunks a body longer than expected is read
// into (see readBody).
const bodyChunk = 1 << 20

// bufferPool shares scrape body buffers, gzip readers and WAL batches between
// the loops of a Manager, so that memory follows the scrapes in flight rather
// than the number of targets. Safe for concurrent use.
type bufferPool struct {
	bodies sync.Pool // *[]byte, at most maxPooledBody
	chunks sync.Pool // *[bodyChunk]byte
	gzip   sync.Pool // *gzip.Reader
	recs   sync.Pool // *wal.Records
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

func (p *bufferPool) getBody() *[]byte {
	if b, ok := p.bodies.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

// putBody returns a body buffer to the pool, unless it is larger than
// maxPooledBody. b may be nil.
func (p *bufferPool) putBody(b *[]byte) {
	if b == nil || cap(*b) > maxPooledBody {
		return
	}
	*b = (*b)[:0]
	p.bodies.Put(b)
}

// scraper fetches the exposition of one target. It is used by one loop and
// is not safe for concurrent use.
type scraper struct {
	client        *http.Client
	req           *http.Request
	timeout       time.Duration
	bodySizeLimit int64 // positive
	pool          *bufferPool
	lastSize      int // uncompressed size of the last body read whole
}

type scraperOptions struct {
	client        *http.Client
	url           string
	accept        string
	compression   bool
	userAgent     string
	timeout       time.Duration
	bodySizeLimit int64 // zero or negative: DefaultBodySizeLimit
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
	limit := o.bodySizeLimit
	if limit <= 0 {
		limit = DefaultBodySizeLimit
	}
	limit = min(limit, math.MaxInt64-1) // limit+1 must not overflow
	return &scraper{
		client:        o.client,
		req:           req,
		timeout:       o.timeout,
		bodySizeLimit: limit,
		pool:          o.pool,
	}, nil
}

// fetch GETs the exposition within the scrape timeout and returns the
// uncompressed body (owned by the caller, who returns it with pool.putBody)
// and its Content-Type. It reads at most bodySizeLimit uncompressed bytes:
// a larger body (by its Content-Length, or once that many bytes came out of
// the decompressor) stops the read and fails with ErrBodySizeLimit. Errors
// do not contain the target URL: callers log it, redacted, beside them.
func (s *scraper) fetch(ctx context.Context) (*[]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.client.Do(s.req.WithContext(ctx))
	if err != nil {
		return nil, "", s.wrap(ctx, "get metrics", err)
	}
	defer func() {
		// Read a little of what is left so that a short tail keeps the
		// connection reusable; anything longer is cut by Close.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("server returned HTTP status %s", resp.Status)
	}

	var r io.Reader = resp.Body
	hint := s.lastSize + s.lastSize/8 + 1
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
	} else if resp.ContentLength >= 0 {
		if resp.ContentLength > s.bodySizeLimit {
			return nil, "", s.tooLarge(fmt.Sprintf("Content-Length %d", resp.ContentLength))
		}
		hint = int(resp.ContentLength) + 1 // room to see EOF without growing
	}
	buf := s.pool.getBody()
	*buf, err = s.pool.readBody(*buf, r, s.bodySizeLimit, hint)
	if err != nil {
		s.pool.putBody(buf)
		if errors.Is(err, ErrBodySizeLimit) {
			return nil, "", s.tooLarge("body")
		}
		return nil, "", s.wrap(ctx, "read body", err)
	}
	s.lastSize = len(*buf)
	return buf, resp.Header.Get("Content-Type"), nil
}

func (s *scraper) tooLarge(what string) error {
	return fmt.Errorf("%w: uncompressed %s larger than %d bytes (raise body_size_limit to scrape it)", ErrBodySizeLimit, what, s.bodySizeLimit)
}

// readBody reads r to EOF into dst[:0] and returns the body. It fails with
// ErrBodySizeLimit as soon as more than limit bytes came. The body is read
// into dst, grown once to hint (the size the caller expects) if smaller,
// never past limit+1. What does not fit goes into bodyChunk-sized chunks
// from the pool and, at EOF, into one buffer of the body's exact size. So
// a body costs its size when the hint is right and twice its size for the
// copy when it is not (bytes.Buffer.ReadFrom doubles without bound, up to
// three times the body), and a body cut at the limit costs the limit once,
// in chunks the next cut body reuses.
func (p *bufferPool) readBody(dst []byte, r io.Reader, limit int64, hint int) ([]byte, error) {
	dst = dst[:0]
	if want := min(int64(max(hint, minBodyRead)), limit+1); int64(cap(dst)) < want {
		dst = make([]byte, 0, want)
	}
	for len(dst) < cap(dst) {
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		switch {
		case int64(len(dst)) > limit:
			return dst, ErrBodySizeLimit
		case errors.Is(err, io.EOF):
			return dst, nil
		case err != nil:
			return dst, err
		}
	}

	// Longer than expected: go on in chunks.
	var chunks []*[bodyChunk]byte
	defer func() {
		for _, c := range chunks {
			p.chunks.Put(c)
		}
	}()
	total, last := int64(len(dst)), bodyChunk // last: bytes in the last chunk
	for {
		if last == bodyChunk {
			c, _ := p.chunks.Get().(*[bodyChunk]byte)
			if c == nil {
				c = new([bodyChunk]byte)
			}
			chunks, last = append(chunks, c), 0
		}
		n, err := r.Read(chunks[len(chunks)-1][last:])
		last += n
		total += int64(n)
		if total > limit {
			return dst, ErrBodySizeLimit
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return dst, err
		}
	}
	body := make([]byte, total)
	k := copy(body, dst)
	for i, c := range chunks {
		if i == len(chunks)-1 {
			copy(body[k:], c[:last])
			break
		}
		k += copy(body[k:], c[:])
	}
	return body, nil
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

package loadgen

import (
	"math"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// instance is one counter, one gauge, or one classic histogram (all its
// series). prefixes hold the pre-rendered `name{labels} ` of each series,
// so a scrape only appends values.
type instance struct {
	gen      int
	labels   []string // name, value pairs of the current generation
	prefixes [][]byte
	metric   *dto.Metric // protobuf form, built on demand; nil after churn
	value    float64     // counter or gauge
	buckets  []float64   // histogram: cumulative counts, +Inf last
	sum      float64
}

// family is one familySpec's instances on one target.
type family struct {
	spec      *familySpec
	header    []byte // # HELP and # TYPE lines
	omHeader  []byte // the same in OpenMetrics: a counter's family drops _total
	instances []instance
	proto     *dto.MetricFamily // protobuf form; Metric is refilled per scrape
}

// target is one synthetic scrape target. It is not safe for concurrent
// use; Generator serialises scrapes of one target.
type target struct {
	families []family
	series   int    // series per scrape
	rng      uint64 // xorshift state
	buf      []byte // last rendered body, reused
	churnAcc float64
	natives  []native // native histograms, served only in protobuf
}

// newTarget builds a target of about n series (rounded to whole
// histograms), with the families' weights deciding the mix, plus natives
// native histograms served only in the protobuf format.
func newTarget(n, natives int, seed uint64) *target {
	t := &target{rng: seed | 1}
	for i := range natives {
		t.natives = append(t.natives, newNative(i))
	}
	total := 0
	for _, s := range specs {
		total += s.weight
	}
	for si := range specs {
		s := &specs[si]
		want := n * s.weight / total
		per := 1
		if s.kind == kindHistogram {
			per = histogramSeries
		}
		count := max(want/per, 1)
		f := family{spec: s, instances: make([]instance, count)}
		f.header = append(f.header, "# HELP "+s.name+" "+s.help+"\n# TYPE "+s.name+" "+s.kind.String()+"\n"...)
		om := s.name
		if s.kind == kindCounter {
			om = strings.TrimSuffix(om, "_total")
		}
		f.omHeader = append(f.omHeader, "# HELP "+om+" "+s.help+"\n# TYPE "+om+" "+s.kind.String()+"\n"...)
		for i := range f.instances {
			in := &f.instances[i]
			in.render(s, i)
			in.value = float64(t.next() % 1000)
			if s.kind == kindHistogram {
				in.buckets = make([]float64, len(bucketBounds)+1)
			}
			t.series += len(in.prefixes)
		}
		t.families = append(t.families, f)
	}
	return t
}

// render (re)builds the series prefixes of the instance's i-th labels.
func (in *instance) render(s *familySpec, i int) {
	labels := s.labels(i, in.gen)
	in.labels = labels
	in.metric = nil
	in.prefixes = in.prefixes[:0]
	one := func(suffix string, extra ...string) {
		b := append([]byte(nil), s.name...)
		b = append(b, suffix...)
		b = append(b, '{')
		pairs := append(labels[:len(labels):len(labels)], extra...)
		for j := 0; j < len(pairs); j += 2 {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, pairs[j]...)
			b = append(b, '=')
			b = strconv.AppendQuote(b, pairs[j+1])
		}
		b = append(b, "} "...)
		in.prefixes = append(in.prefixes, b)
	}
	if s.kind != kindHistogram {
		one("")
		return
	}
	for _, le := range bucketBounds {
		one("_bucket", "le", le)
	}
	one("_bucket", "le", "+Inf")
	one("_sum")
	one("_count")
}

func (t *target) next() uint64 {
	t.rng ^= t.rng << 13
	t.rng ^= t.rng >> 7
	t.rng ^= t.rng << 17
	return t.rng
}

// churn replaces about frac of the target's instances by new ones (new
// label values), as pods being rescheduled do.
func (t *target) churn(frac float64) {
	if frac <= 0 {
		return
	}
	for fi := range t.families {
		f := &t.families[fi]
		t.churnAcc += frac * float64(len(f.instances))
		for ; t.churnAcc >= 1; t.churnAcc-- {
			i := int(t.next() % uint64(len(f.instances)))
			in := &f.instances[i]
			in.gen++
			in.render(f.spec, i)
			in.value = 0
			clear(in.buckets)
			in.sum = 0
		}
	}
}

// advance moves every value on by one scrape.
func (t *target) advance() {
	for fi := range t.families {
		f := &t.families[fi]
		for ii := range f.instances {
			in := &f.instances[ii]
			r := t.next()
			switch f.spec.kind {
			case kindCounter:
				in.value += float64(r % 100)
			case kindGauge:
				in.value = math.Abs(in.value + float64(int64(r%201)-100))
			case kindHistogram:
				var cum float64
				for k := range in.buckets {
					cum += float64(r >> (k * 5) & 7)
					in.buckets[k] += cum
				}
				in.sum += cum * 0.137
			}
		}
	}
	for i := range t.natives {
		t.natives[i].advance(t.next())
	}
}

// scrape advances every value and renders the exposition into t.buf:
// Prometheus' text format, or OpenMetrics 1.0 if om is set. It returns
// the body (valid until the next scrape) and its sample count.
func (t *target) scrape(churn float64, om bool) ([]byte, int) {
	t.churn(churn)
	t.advance()
	b := t.buf[:0]
	for fi := range t.families {
		f := &t.families[fi]
		if om {
			b = append(b, f.omHeader...)
		} else {
			b = append(b, f.header...)
		}
		for ii := range f.instances {
			in := &f.instances[ii]
			if f.spec.kind != kindHistogram {
				b = appendSample(b, in.prefixes[0], in.value)
				continue
			}
			for k := range in.buckets {
				b = appendSample(b, in.prefixes[k], in.buckets[k])
			}
			b = appendSample(b, in.prefixes[len(in.buckets)], in.sum)
			b = appendSample(b, in.prefixes[len(in.buckets)+1], in.buckets[len(in.buckets)-1])
		}
	}
	if om {
		b = append(b, "# EOF\n"...)
	}
	t.buf = b
	return b, t.series
}

func appendSample(b, prefix []byte, v float64) []byte {
	b = append(b, prefix...)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	return append(b, '\n')
}

// Target is one synthetic target without a listener, for benchmarks that
// need the generator's exposition. It is not safe for concurrent use.
type Target struct{ t *target }

// NewTarget returns a target of about series series, as Generator serves.
func NewTarget(series int, seed uint64) *Target { return &Target{t: newTarget(series, 0, seed|1)} }

// Scrape advances the values and returns the text exposition (valid until
// the next Scrape) and its sample count.
func (t *Target) Scrape() ([]byte, int) { return t.t.scrape(0, false) }

// NewProtoTarget returns a target of about series series plus natives
// native histograms, as Generator serves a scraper asking for protobuf.
// The Generator's i-th target (counting from 0) has seed
// Options.Seed*(i+1)*0x9e3779b97f4a7c15.
func NewProtoTarget(series, natives int, seed uint64) *Target {
	return &Target{t: newTarget(series, natives, seed)}
}

// ScrapeProto advances the values and returns the protobuf exposition
// (ProtobufContentType; valid until the next scrape), native histograms
// included, and its sample count.
func (t *Target) ScrapeProto() ([]byte, int, error) { return t.t.scrapeProto(0) }

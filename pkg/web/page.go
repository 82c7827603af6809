package web

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// The status page is written by Go code rather than html/template: a
// template's execution looks methods up by name (reflect's MethodByName),
// and once that is linked the linker keeps every exported method of every
// type in the binary. testdata/status.html.tmpl is the page as a
// template; TestPageMatchesTemplate checks, byte for byte, that this code
// writes what html/template would.

// pageData is what the page shows.
type pageData struct {
	*view
	Several bool // more than one pipeline: each gets a heading
	Runtime runtimeInfo
}

// page renders the status page. It is rendered into a buffer first, as it
// was when a template could fail, so the answer is written at once.
func (u *UI) page(w http.ResponseWriter, _ *http.Request) {
	v := u.snapshot()
	var b bytes.Buffer
	writePage(&b, pageData{view: v, Several: len(v.Pipelines) > 1, Runtime: u.runtime()})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

// htmlEscaper escapes text and quoted attribute values as html/template
// does (its htmlReplacementTable).
var htmlEscaper = strings.NewReplacer("\x00", "\uFFFD", `"`, "&#34;", "&", "&amp;", "'", "&#39;", "+", "&#43;", "<", "&lt;", ">", "&gt;")

// pageWriter writes HTML into a buffer. Raw strings go out as they are;
// values are escaped.
type pageWriter struct{ b *bytes.Buffer }

func (w pageWriter) raw(s string) { w.b.WriteString(s) }

// text writes v (a string, or fmt.Sprint of anything else) escaped, for
// element text or a double-quoted attribute value.
func (w pageWriter) text(v any) {
	s, ok := v.(string)
	if !ok {
		s = fmt.Sprint(v)
	}
	_, _ = htmlEscaper.WriteString(w.b, s)
}

// textf writes fmt.Sprintf(format, args...) escaped.
func (w pageWriter) textf(format string, args ...any) { w.text(fmt.Sprintf(format, args...)) }

// href writes u for a double-quoted href: a scheme other than http, https
// or mailto becomes "#ZgotmplZ", bytes a URL may not hold are
// percent-encoded (valid escapes kept), and the rest is escaped, as
// html/template's urlFilter, urlNormalizer and attrEscaper do.
func (w pageWriter) href(u string) {
	if scheme, _, ok := strings.Cut(u, ":"); ok && !strings.Contains(scheme, "/") &&
		!strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") && !strings.EqualFold(scheme, "mailto") {
		w.raw("#ZgotmplZ")
		return
	}
	var nb strings.Builder
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-._~!#$&*+,/:;=?@[]", c) >= 0,
			c == '%' && i+2 < len(u) && isHex(u[i+1]) && isHex(u[i+2]):
			nb.WriteByte(c)
		default:
			fmt.Fprintf(&nb, "%%%02x", c)
		}
	}
	w.text(nb.String())
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// labels writes each label of ls as a span.
func (w pageWriter) labels(ls labels.Labels) {
	ls.Range(func(l labels.Label) {
		w.raw(`<span class="label">`)
		w.text(l.Name)
		w.raw(`="`)
		w.text(l.Value)
		w.raw(`"</span>`)
	})
}

// instance writes the heading of a pipeline when there are several.
func (w pageWriter) instance(d pageData, p pipelineView) {
	if d.Several {
		w.raw("<h3>Instance ")
		w.text(p.Instance)
		w.raw("</h3>")
	}
}

const timeLayout = "2006-01-02 15:04:05 MST"

// writePage writes the status page of d into b.
func writePage(b *bytes.Buffer, d pageData) {
	w := pageWriter{b}
	w.raw(pageHead)
	w.raw("<p>Computed at ")
	w.text(d.At.UTC().Format(timeLayout))
	w.raw("; every number is as of then. Reload the page for new ones.</p>\n</header>\n" +
		"<nav>\n" +
		`<a href="#targets">Targets</a><a href="#discovery">Service discovery</a><a href="#remote-write">Remote write</a><a href="#wal">WAL</a><a href="#cost">Cost and cardinality</a><a href="#build">Build and runtime</a>` + "\n" +
		"</nav>\n<main>\n")
	writeTargets(w, d)
	writeDiscovery(w, d)
	writeRemoteWrite(w, d)
	writeWAL(w, d)
	writeCost(w, d)
	writeBuild(w, d)
	w.raw("</main>\n</body>\n</html>\n")
}

func writeTargets(w pageWriter, d pageData) {
	w.raw(`<section id="targets">` + "\n<h2>Targets</h2>\n" +
		`<p class="what">Each scraped target by job: its health, labels after relabeling (discovered labels in the details), its last scrape and the series it exposed.</p>` + "\n")
	for _, p := range d.Pipelines {
		w.instance(d, p)
		w.raw("\n")
		for _, j := range p.Jobs {
			w.raw("\n<h3>")
			w.text(j.Job)
			w.raw(" (")
			w.text(len(j.Active))
			w.raw(" target")
			if len(j.Active) != 1 {
				w.raw("s")
			}
			w.raw(")</h3>\n")
			if len(j.Active) > 0 {
				w.raw("<table>\n" +
					`<tr><th>Endpoint</th><th>Health</th><th>Labels</th><th>Last scrape</th><th class="num">Duration</th><th class="num">Series</th><th>Last error</th></tr>` + "\n")
				for _, t := range j.Active {
					w.raw("<tr>\n<td><a href=\"")
					w.href(t.ScrapeURL)
					w.raw(`">`)
					w.text(t.ScrapeURL)
					w.raw("</a></td>\n<td><span class=\"")
					w.text(t.Health)
					w.raw(`">`)
					w.text(t.Health)
					w.raw("</span></td>\n<td>")
					w.labels(t.Labels)
					w.raw("\n<details><summary>before relabeling</summary>")
					w.labels(t.DiscoveredLabels)
					w.raw("</details></td>\n<td>")
					w.text(ago(t.LastScrape, d.At))
					w.raw("</td>\n<td class=\"num\">")
					w.text(ms(t.LastScrapeDuration))
					w.raw("</td>\n<td class=\"num\">")
					w.text(t.Series)
					w.raw("</td>\n<td class=\"err\">")
					w.text(t.LastError)
					w.raw("</td>\n</tr>")
				}
				w.raw("\n</table>")
			} else {
				w.raw("<p>No target is scraped.</p>")
			}
			w.raw("\n")
		}
		if len(p.Jobs) == 0 {
			w.raw("<p>No scrape job.</p>")
		}
		w.raw("\n")
	}
	if len(d.Pipelines) == 0 {
		w.raw("<p>No pipeline is running.</p>")
	}
	w.raw("\n</section>\n\n")
}

func writeDiscovery(w pageWriter, d pageData) {
	w.raw(`<section id="discovery">` + "\n<h2>Service discovery</h2>\n" +
		`<p class="what">Targets service discovery found per job, those scraped, and those dropped, by relabeling or because another shard scrapes them (up to keep_dropped_targets are listed).</p>` + "\n")
	for _, p := range d.Pipelines {
		w.instance(d, p)
		w.raw("\n<table>\n" +
			`<tr><th>Job</th><th class="num">Discovered</th><th class="num">Scraped</th><th class="num">Dropped</th><th>Dropped targets</th></tr>` + "\n")
		for _, j := range p.Jobs {
			w.raw("<tr><td>")
			w.text(j.Job)
			w.raw(`</td><td class="num">`)
			w.text(j.Discovered)
			w.raw(`</td><td class="num">`)
			w.text(len(j.Active))
			w.raw(`</td><td class="num">`)
			w.text(j.DroppedTotal)
			w.raw("</td>\n<td>")
			if len(j.Dropped) > 0 {
				w.raw("<details><summary>")
				w.text(len(j.Dropped))
				w.raw(" listed</summary><table>")
				for _, t := range j.Dropped {
					w.raw("<tr><td>")
					w.text(t.Reason)
					w.raw("</td><td>")
					w.labels(t.DiscoveredLabels)
					w.raw("</td></tr>")
				}
				w.raw("</table></details>")
			}
			w.raw("</td></tr>")
		}
		w.raw("\n</table>\n")
		if len(p.Silent) > 0 {
			w.raw("<table>\n<tr><th>Job</th><th>Discovery</th><th>State</th></tr>\n")
			for _, s := range p.Silent {
				w.raw("<tr><td>")
				w.text(s.Job)
				w.raw("</td><td>")
				w.text(s.Mechanism)
				w.raw("</td><td>")
				switch {
				case s.Failed:
					w.raw("failed: its discoverer could not be created (see the log)")
				case s.GaveUp:
					w.raw("no target set within ")
					w.text(s.Wait)
					w.raw(": failed or empty (see the prometheus_sd_* failure counters and the log); readiness no longer waits for it")
				default:
					w.raw("no target set yet: readiness waits for it, up to ")
					w.text(s.Wait)
				}
				w.raw("</td></tr>")
			}
			w.raw("\n</table>")
		}
		w.raw("\n")
	}
	w.raw("\n</section>\n\n")
}

func writeRemoteWrite(w pageWriter, d pageData) {
	w.raw(`<section id="remote-write">` + "\n<h2>Remote write</h2>\n" +
		`<p class="what">Each remote_write endpoint (credentials never shown): protocol, shards, what is pending, the samples it accepted per second, the last error, and how far behind the WAL it is.</p>` + "\n")
	for _, p := range d.Pipelines {
		w.instance(d, p)
		w.raw("\n")
		if len(p.Endpoints) > 0 {
			w.raw("<table>\n" +
				`<tr><th>Name / URL</th><th>Protocol</th><th class="num">Shards (now / desired / max)</th><th class="num">Pending</th><th class="num">Samples/s delivered</th><th>Last error</th><th class="num">Lag</th><th>Send position</th></tr>` + "\n")
			for _, e := range p.Endpoints {
				w.raw("<tr>\n<td>")
				if e.Name != "" {
					w.raw("<strong>")
					w.text(e.Name)
					w.raw("</strong><br>")
				}
				w.raw("<code>")
				w.text(e.URL)
				w.raw("</code></td>\n<td>")
				w.text(e.Protocol)
				w.raw("</td>\n<td class=\"num\">")
				w.text(e.Shards)
				w.raw(" / ")
				w.text(e.DesiredShards)
				w.raw(" / ")
				w.text(e.MaxShards)
				w.raw("</td>\n<td class=\"num\">")
				w.text(e.Pending)
				w.raw("</td>\n<td class=\"num\">")
				w.textf("%.1f", e.PerSecond)
				w.raw("<br><small>")
				w.text(e.RateSince)
				w.raw("</small></td>\n<td>")
				if !e.LastError.Time.IsZero() {
					w.raw(`<span class="err">`)
					w.text(e.LastError.Message)
					if e.LastError.Err != "" {
						w.raw(": ")
						w.text(e.LastError.Err)
					}
					w.raw("</span><br><small>")
					w.text(ago(e.LastError.Time, d.At))
					w.raw("</small>")
				} else {
					w.raw("none")
				}
				w.raw("</td>\n<td class=\"num\">")
				if e.LagSeconds < 0 {
					w.raw("nothing delivered yet")
				} else {
					w.textf("%.1f", e.LagSeconds)
					w.raw(" s")
				}
				w.raw("<br>")
				w.text(byteSize(e.LagBytes))
				w.raw("</td>\n<td><code>")
				w.text(e.SendPosition)
				w.raw("</code></td>\n</tr>")
			}
			w.raw("\n</table>")
		} else {
			w.raw("<p>No remote_write is configured: samples are logged to the WAL and sent nowhere.</p>")
		}
		w.raw("\n")
	}
	w.raw("\n</section>\n\n")
}

func writeWAL(w pageWriter, d pageData) {
	w.raw(`<section id="wal">` + "\n<h2>WAL</h2>\n" +
		`<p class="what">The write-ahead log every sample is logged to before it counts as scraped.</p>` + "\n")
	for _, p := range d.Pipelines {
		w.instance(d, p)
		w.raw("\n")
		if p.HasWAL {
			s := p.WAL
			w.raw("<dl>\n<dt>Directory</dt><dd><code>")
			w.text(s.Dir)
			w.raw("</code></dd>\n<dt>Size</dt><dd>")
			w.text(byteSize(s.Bytes))
			w.raw("</dd>\n<dt>Segments</dt><dd>")
			w.text(s.Segments)
			if s.FirstSegment >= 0 {
				w.raw(" (")
				w.text(s.FirstSegment)
				w.raw(" to ")
				w.text(s.LastSegment)
				w.raw(")")
			}
			w.raw("</dd>\n<dt>Oldest segment last written</dt><dd>")
			w.text(ago(s.OldestWrite, d.At))
			w.raw("</dd>\n<dt>Last checkpoint</dt><dd>")
			if s.Checkpoint != "" {
				w.text(s.Checkpoint)
				w.raw(", ")
				w.text(ago(s.CheckpointTime, d.At))
			} else {
				w.raw("none yet")
			}
			w.raw("</dd>\n<dt>Fsync policy</dt><dd>")
			w.text(s.Fsync)
			if fmt.Sprint(s.Fsync) == "interval" {
				w.raw(" (every ")
				w.text(s.FsyncInterval)
				w.raw(")")
			}
			w.raw("</dd>\n<dt>This run started at</dt><dd><code>")
			w.text(s.Started)
			w.raw("</code></dd>\n")
			if p.WALErr != "" {
				w.raw(`<dt>Error</dt><dd class="err">`)
				w.text(p.WALErr)
				w.raw("</dd>")
			}
			w.raw("\n</dl>")
		}
		w.raw("\n")
	}
	w.raw("\n</section>\n\n")
}

func writeCost(w pageWriter, d pageData) {
	w.raw(`<section id="cost">` + "\n<h2>Cost and cardinality</h2>\n" +
		`<p class="what">Samples per second and active series per job and per remote_write, the 20 metric names with the most series per job, and an estimate of AMP's ingestion price for 30 days at this rate: `)
	w.textf("$%.2f", d.Price)
	w.raw(` per 10 million samples (AMP's published first tier, the first 2 billion samples a month in US East (N. Virginia), <a href="https://aws.amazon.com/prometheus/pricing/">aws.amazon.com/prometheus/pricing</a>; set another with --web.amp-price-per-10m-samples). Storage and queries are billed apart and not counted.</p>` + "\n")
	for _, p := range d.Pipelines {
		w.instance(d, p)
		w.raw("\n<h3>Per job (scraped)</h3>\n<table>\n" +
			`<tr><th>Job</th><th class="num">Samples/s</th><th class="num">Active series</th><th class="num">Est. AMP cost / month</th><th>Top metric names by series</th></tr>` + "\n")
		for _, j := range p.Jobs {
			w.raw("<tr><td>")
			w.text(j.Job)
			w.raw(`</td><td class="num">`)
			w.textf("%.1f", jobRate(j))
			w.raw(`</td><td class="num">`)
			w.text(j.Series)
			w.raw(`</td><td class="num">`)
			w.textf("$%.2f", monthlyCost(jobRate(j), d.Price))
			w.raw("</td>\n<td><details><summary>")
			w.text(len(j.TopNames))
			w.raw(" names</summary><table>")
			for _, n := range j.TopNames {
				w.raw("<tr><td><code>")
				w.text(n.Name)
				w.raw(`</code></td><td class="num">`)
				w.text(n.Series)
				w.raw("</td></tr>")
			}
			w.raw("</table></details></td></tr>")
		}
		w.raw("\n</table>\n<h3>Per remote_write (delivered)</h3>\n\n<table>\n" +
			`<tr><th>Name / URL</th><th class="num">Samples/s</th><th class="num">Active series (scraped)</th><th class="num">Est. AMP cost / month</th></tr>` + "\n")
		for _, e := range p.Endpoints {
			w.raw("<tr><td><strong>")
			w.text(e.Name)
			w.raw("</strong> <code>")
			w.text(e.URL)
			w.raw(`</code></td><td class="num">`)
			w.textf("%.1f", e.PerSecond)
			w.raw(`</td><td class="num">`)
			w.text(p.Series)
			w.raw(`</td><td class="num">`)
			w.textf("$%.2f", e.CostMonth)
			w.raw("</td></tr>")
		}
		w.raw("\n</table>\n")
	}
	w.raw("\n</section>\n\n")
}

func writeBuild(w pageWriter, d pageData) {
	w.raw(`<section id="build">` + "\n<h2>Build and runtime</h2>\n" +
		`<p class="what">The rwagent binary and the process. JSON: <a href="api/v1/status/buildinfo">buildinfo</a>, <a href="api/v1/status/runtimeinfo">runtimeinfo</a>, <a href="api/v1/status/flags">flags</a>, <a href="api/v1/status/config">config</a> (secrets shown as &lt;secret&gt;), <a href="api/v1/targets">targets</a>, <a href="api/v1/remote_write">remote_write</a>.</p>` + "\n" +
		"<dl>\n<dt>Version</dt><dd>")
	w.text(d.Build.Version)
	if d.Build.Revision != "" {
		w.raw(" (revision ")
		w.text(d.Build.Revision)
		w.raw(")")
	}
	w.raw("</dd>\n<dt>Go</dt><dd>")
	w.text(d.Build.GoVersion)
	w.raw("</dd>\n<dt>Started</dt><dd>")
	w.text(d.Start.UTC().Format(timeLayout))
	w.raw(" (")
	w.text(ago(d.Start, d.At))
	w.raw(")</dd>\n<dt>Configuration</dt><dd>loaded ")
	w.text(d.Runtime.LastConfigTime.UTC().Format(timeLayout))
	w.raw(" (")
	w.text(ago(d.Runtime.LastConfigTime, d.At))
	w.raw(")")
	if !d.Runtime.ReloadConfigSuccess {
		w.raw(`; <strong class="err">the last reload failed</strong>, see the log: the configuration loaded then still runs`)
	}
	w.raw("</dd>\n<dt>Working directory</dt><dd><code>")
	w.text(d.Runtime.CWD)
	w.raw("</code></dd>\n<dt>Goroutines</dt><dd>")
	w.text(d.Runtime.GoroutineCount)
	w.raw("</dd>\n<dt>GOMAXPROCS</dt><dd>")
	w.text(d.Runtime.GOMAXPROCS)
	w.raw("</dd>\n<dt>GOGC</dt><dd>")
	w.text(d.Runtime.GOGC)
	w.raw("</dd>\n</dl>\n</section>\n")
}

// ms is d in milliseconds with one decimal: "12.5 ms".
func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// ago says how long before now t was: "12s ago", "never" for zero.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Second:
		return fmt.Sprintf("%dms ago", d.Milliseconds())
	case d < time.Hour:
		return d.Round(time.Second).String() + " ago"
	}
	return d.Round(time.Minute).String() + " ago"
}

// byteSize is n bytes in binary units; negative means unknown.
func byteSize(n int64) string {
	if n < 0 {
		return "unknown"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// pageHead is the page up to its first value: the document head and its
// style sheet.
const pageHead = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rwagent status</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 12px 24px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; color: #c5cad6; }
nav { background: #fff; border-bottom: 1px solid #dde1e8; padding: 8px 24px; position: sticky; top: 0; }
nav a { margin-right: 16px; color: #2459c4; text-decoration: none; font-weight: 600; }
main { padding: 8px 24px 32px; }
section { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 4px 16px 12px; margin: 16px 0; }
h2 { font-size: 17px; margin: 12px 0 4px; }
h3 { font-size: 15px; margin: 14px 0 4px; }
.what { color: #5b6475; margin: 0 0 8px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eceff3; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: #fff; background: #1f8a4c; border-radius: 3px; padding: 0 6px; }
.down { color: #fff; background: #c62f2f; border-radius: 3px; padding: 0 6px; }
.unknown { color: #fff; background: #8a8f99; border-radius: 3px; padding: 0 6px; }
.label { display: inline-block; background: #eef1f6; border-radius: 3px; padding: 0 5px; margin: 1px 2px; font-size: 12px; }
.err { color: #b02525; }
code { font-size: 12px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dt { color: #5b6475; }
dd { margin: 0; }
</style>
</head>
<body>
<header>
<h1>rwagent status</h1>
`

package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

//go:embed templates/status.html
var templates embed.FS

// parsePage parses the page at / for a price per 10M samples. The
// template is embedded: an error is a bug of this package.
func parsePage(price float64) *template.Template {
	return template.Must(template.New("status.html").Funcs(template.FuncMap{
		"ago":     ago,
		"ms":      func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) },
		"bytes":   byteSize,
		"jobRate": jobRate,
		"lbls":    labelList,
		"cost":    func(perSecond float64) float64 { return monthlyCost(perSecond, price) },
	}).ParseFS(templates, "templates/status.html"))
}

// pageData is what the template reads.
type pageData struct {
	*view
	Several bool // more than one pipeline: each gets a heading
	Runtime runtimeInfo
}

// page renders the status page. It is rendered into a buffer first, so a
// template error answers 500 rather than half a page.
func (u *UI) page(w http.ResponseWriter, _ *http.Request) {
	v := u.snapshot()
	var b bytes.Buffer
	if err := u.tmpl.Execute(&b, pageData{view: v, Several: len(v.Pipelines) > 1, Runtime: u.runtime()}); err != nil {
		http.Error(w, "render the status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b.Bytes())
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

// labelList is ls as a list the template can range over.
func labelList(ls labels.Labels) []labels.Label {
	out := make([]labels.Label, 0, ls.Len())
	ls.Range(func(l labels.Label) { out = append(out, l) })
	return out
}

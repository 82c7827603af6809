package receive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// This file answers Prometheus' HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/)
// the way AMP's QueryMetrics, GetSeries, GetLabels and query_exemplars do.

// apiResponse is Prometheus' JSON envelope.
type apiResponse struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Infos     []string `json:"infos,omitempty"`
}

// apiError is a failed API call: Prometheus' errorType and the HTTP status
// it answers with.
type apiError struct {
	typ    string
	status int
	err    error
}

func badData(err error) *apiError {
	return &apiError{typ: "bad_data", status: http.StatusBadRequest, err: err}
}

func internalError(err error) *apiError {
	return &apiError{typ: "internal", status: http.StatusInternalServerError, err: err}
}

// queryError classifies an error of query evaluation as Prometheus' API does.
func queryError(err error) *apiError {
	switch {
	case errors.As(err, new(promql.ErrQueryCanceled)):
		return &apiError{typ: "canceled", status: 499, err: err}
	case errors.As(err, new(promql.ErrQueryTimeout)):
		return &apiError{typ: "timeout", status: http.StatusServiceUnavailable, err: err}
	case errors.As(err, new(promql.ErrStorage)):
		return internalError(err)
	}
	return &apiError{typ: "execution", status: http.StatusUnprocessableEntity, err: err}
}

func writeAPI(w http.ResponseWriter, status int, resp apiResponse) {
	body, err := json.Marshal(resp)
	if err != nil {
		resp = apiResponse{Status: "error", ErrorType: "internal", Error: fmt.Sprintf("encode response: %v", err)}
		body, _ = json.Marshal(resp) // strings only
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	writeAPI(w, e.status, apiResponse{Status: "error", ErrorType: e.typ, Error: e.err.Error()})
}

func writeAPIData(w http.ResponseWriter, data any, warnings annotations.Annotations, query string) {
	resp := apiResponse{Status: "success", Data: data}
	if len(warnings) > 0 {
		resp.Warnings, resp.Infos = warnings.AsStrings(query, 10, 10)
	}
	writeAPI(w, http.StatusOK, resp)
}

// queryData is the data of a query answer.
type queryData struct {
	ResultType parser.ValueType `json:"resultType"`
	Result     parser.Value     `json:"result"`
}

func (s *Server) serveQuery(w http.ResponseWriter, r *http.Request, _ []byte) {
	if err := r.ParseForm(); err != nil {
		writeAPIError(w, badData(fmt.Errorf("parse form: %w", err)))
		return
	}
	ts := s.opts.Now()
	if v := r.Form.Get("time"); v != "" {
		ms, err := parseTime(v)
		if err != nil {
			writeAPIError(w, badData(fmt.Errorf("invalid parameter \"time\": %w", err)))
			return
		}
		ts = timestamp.Time(ms)
	}
	expr := r.Form.Get("query")
	qry, err := s.engine.NewInstantQuery(r.Context(), s.db, nil, expr, ts)
	s.runQuery(w, r.Context(), qry, err, expr)
}

// maxRangePoints is Prometheus' limit on the points of one range query series.
const maxRangePoints = 11_000

func (s *Server) serveQueryRange(w http.ResponseWriter, r *http.Request, _ []byte) {
	if err := r.ParseForm(); err != nil {
		writeAPIError(w, badData(fmt.Errorf("parse form: %w", err)))
		return
	}
	start, err := parseTime(r.Form.Get("start"))
	if err != nil {
		writeAPIError(w, badData(fmt.Errorf("invalid parameter \"start\": %w", err)))
		return
	}
	end, err := parseTime(r.Form.Get("end"))
	if err != nil {
		writeAPIError(w, badData(fmt.Errorf("invalid parameter \"end\": %w", err)))
		return
	}
	if end < start {
		writeAPIError(w, badData(errors.New("invalid parameter \"end\": end timestamp must not be before start time")))
		return
	}
	step, err := parseDuration(r.Form.Get("step"))
	if err != nil {
		writeAPIError(w, badData(fmt.Errorf("invalid parameter \"step\": %w", err)))
		return
	}
	if step <= 0 {
		writeAPIError(w, badData(errors.New("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer")))
		return
	}
	if (end-start)/step.Milliseconds() >= maxRangePoints {
		writeAPIError(w, badData(errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")))
		return
	}
	expr := r.Form.Get("query")
	qry, err := s.engine.NewRangeQuery(r.Context(), s.db, nil, expr, timestamp.Time(start), timestamp.Time(end), step)
	s.runQuery(w, r.Context(), qry, err, expr)
}

// runQuery executes qry (or answers err from creating it) and writes the result.
func (s *Server) runQuery(w http.ResponseWriter, ctx context.Context, qry promql.Query, err error, expr string) {
	if err != nil {
		writeAPIError(w, badData(fmt.Errorf("invalid parameter \"query\": %w", err)))
		return
	}
	defer qry.Close() // after the result is encoded: it owns the result's memory
	res := qry.Exec(ctx)
	if res.Err != nil {
		writeAPIError(w, queryError(res.Err))
		return
	}
	// Prometheus answers an empty result as [], not null.
	switch v := res.Value.(type) {
	case promql.Vector:
		if v == nil {
			res.Value = promql.Vector{}
		}
	case promql.Matrix:
		if v == nil {
			res.Value = promql.Matrix{}
		}
	}
	writeAPIData(w, queryData{ResultType: res.Value.Type(), Result: res.Value}, res.Warnings, expr)
}

// timeRange reads the start and end parameters; missing ones mean all time.
func timeRange(r *http.Request) (start, end int64, err error) {
	start, end = math.MinInt64, math.MaxInt64
	if v := r.Form.Get("start"); v != "" {
		if start, err = parseTime(v); err != nil {
			return 0, 0, fmt.Errorf("invalid parameter \"start\": %w", err)
		}
	}
	if v := r.Form.Get("end"); v != "" {
		if end, err = parseTime(v); err != nil {
			return 0, 0, fmt.Errorf("invalid parameter \"end\": %w", err)
		}
	}
	return start, end, nil
}

// formSelectors parses the form (query string and POST body) and its time
// range and match[] selectors.
func (s *Server) formSelectors(r *http.Request, required bool) (start, end int64, sets [][]*labels.Matcher, apiErr *apiError) {
	if err := r.ParseForm(); err != nil {
		return 0, 0, nil, badData(fmt.Errorf("parse form: %w", err))
	}
	start, end, err := timeRange(r)
	if err != nil {
		return 0, 0, nil, badData(err)
	}
	match := r.Form["match[]"]
	if len(match) == 0 && required {
		return 0, 0, nil, badData(errors.New("no match[] parameter provided"))
	}
	if len(match) > 0 {
		if sets, err = s.parser.ParseMetricSelectors(match); err != nil {
			return 0, 0, nil, badData(err)
		}
	}
	return start, end, sets, nil
}

func (s *Server) serveSeries(w http.ResponseWriter, r *http.Request, _ []byte) {
	start, end, sets, apiErr := s.formSelectors(r, true)
	if apiErr != nil {
		writeAPIError(w, apiErr)
		return
	}
	series, warnings, err := s.selectSeries(r.Context(), start, end, sets)
	if err != nil {
		writeAPIError(w, internalError(err))
		return
	}
	writeAPIData(w, series, warnings, "")
}

// selectSeries returns the labels of the series matching any of sets within
// [start, end], sorted. The labels are copies the caller owns.
func (s *Server) selectSeries(ctx context.Context, start, end int64, sets [][]*labels.Matcher) ([]labels.Labels, annotations.Annotations, error) {
	q, err := s.db.Querier(start, end)
	if err != nil {
		return nil, nil, fmt.Errorf("open querier: %w", err)
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: start, End: end, Func: "series"}
	var ss storage.SeriesSet
	if len(sets) == 1 {
		ss = q.Select(ctx, false, hints, sets[0]...)
	} else {
		all := make([]storage.SeriesSet, 0, len(sets))
		for _, ms := range sets {
			all = append(all, q.Select(ctx, true, hints, ms...))
		}
		ss = storage.NewMergeSeriesSet(all, 0, storage.ChainedSeriesMerge)
	}
	out := []labels.Labels{}
	for ss.Next() {
		out = append(out, ss.At().Labels().Copy())
	}
	if err := ss.Err(); err != nil {
		return nil, nil, fmt.Errorf("select series: %w", err)
	}
	return out, ss.Warnings(), nil
}

func (s *Server) serveLabels(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.serveLabelQuery(w, r, "")
}

func (s *Server) serveLabelValues(w http.ResponseWriter, r *http.Request, _ []byte) {
	name := r.PathValue("name")
	if !model.UTF8Validation.IsValidLabelName(name) {
		writeAPIError(w, badData(fmt.Errorf("invalid label name: %q", name)))
		return
	}
	s.serveLabelQuery(w, r, name)
}

// serveLabelQuery answers the label names (name == "") or the values of
// label name, of the series matching match[] (all series when none).
func (s *Server) serveLabelQuery(w http.ResponseWriter, r *http.Request, name string) {
	start, end, sets, apiErr := s.formSelectors(r, false)
	if apiErr != nil {
		writeAPIError(w, apiErr)
		return
	}
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	q, err := s.db.Querier(start, end)
	if err != nil {
		writeAPIError(w, internalError(fmt.Errorf("open querier: %w", err)))
		return
	}
	defer q.Close()
	seen := map[string]struct{}{}
	var warnings annotations.Annotations
	for _, ms := range sets {
		var vals []string
		var ws annotations.Annotations
		if name == "" {
			vals, ws, err = q.LabelNames(r.Context(), nil, ms...)
		} else {
			vals, ws, err = q.LabelValues(r.Context(), name, nil, ms...)
		}
		if err != nil {
			writeAPIError(w, internalError(fmt.Errorf("query labels: %w", err)))
			return
		}
		warnings.Merge(ws)
		for _, v := range vals {
			seen[v] = struct{}{}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	slices.Sort(out)
	writeAPIData(w, out, warnings, "")
}

// exemplarJSON is an exemplar as Prometheus' API writes it.
type exemplarJSON struct {
	Labels    labels.Labels `json:"labels"`
	Value     string        `json:"value"`
	Timestamp float64       `json:"timestamp"`
}

type exemplarResultJSON struct {
	SeriesLabels labels.Labels  `json:"seriesLabels"`
	Exemplars    []exemplarJSON `json:"exemplars"`
}

func (s *Server) serveExemplars(w http.ResponseWriter, r *http.Request, _ []byte) {
	if err := r.ParseForm(); err != nil {
		writeAPIError(w, badData(fmt.Errorf("parse form: %w", err)))
		return
	}
	start, end, err := timeRange(r)
	if err != nil {
		writeAPIError(w, badData(err))
		return
	}
	expr, err := s.parser.ParseExpr(r.Form.Get("query"))
	if err != nil {
		writeAPIError(w, badData(fmt.Errorf("invalid parameter \"query\": %w", err)))
		return
	}
	res, err := s.selectExemplars(r.Context(), start, end, parser.ExtractSelectors(expr))
	if err != nil {
		writeAPIError(w, internalError(err))
		return
	}
	out := make([]exemplarResultJSON, 0, len(res))
	for _, qr := range res {
		es := make([]exemplarJSON, 0, len(qr.Exemplars))
		for _, e := range qr.Exemplars {
			es = append(es, exemplarJSON{
				Labels:    e.Labels,
				Value:     strconv.FormatFloat(e.Value, 'f', -1, 64),
				Timestamp: float64(e.Ts) / 1000,
			})
		}
		out = append(out, exemplarResultJSON{SeriesLabels: qr.SeriesLabels, Exemplars: es})
	}
	writeAPIData(w, out, nil, "")
}

// parseTime parses a Prometheus API timestamp, Unix seconds with an optional
// fraction or RFC 3339, into milliseconds. Seconds beyond ±1e12 (about
// 31,000 years) are refused, so that the milliseconds fit a float64 exactly
// and conversions cannot overflow.
func parseTime(s string) (int64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.Abs(f) > maxTimeSeconds {
			return 0, fmt.Errorf("cannot parse %q to a valid timestamp: out of range", s)
		}
		return int64(math.Round(f * 1000)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("cannot parse %q to a valid timestamp", s)
	}
	if sec := t.Unix(); sec > maxTimeSeconds || sec < -maxTimeSeconds {
		return 0, fmt.Errorf("cannot parse %q to a valid timestamp: out of range", s)
	}
	return timestamp.FromTime(t), nil
}

const maxTimeSeconds = 1e12

// parseDuration parses a Prometheus API duration: seconds with an optional
// fraction, or a Prometheus duration such as "1m30s".
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		ns := f * float64(time.Second)
		if math.IsNaN(ns) || ns >= math.MaxInt64 || ns <= math.MinInt64 {
			return 0, fmt.Errorf("cannot parse %q to a valid duration: out of range", s)
		}
		return time.Duration(ns), nil
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
	}
	return time.Duration(d), nil
}

package receive

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

// This file holds the in-process read helpers that tests use instead of the
// HTTP API. They are safe for concurrent use and return ErrClosed after Close.

// Query evaluates the PromQL expression expr at ts and returns the resulting
// vector (a scalar result becomes one sample without labels). The vector is
// a copy the caller owns.
func (s *Server) Query(ctx context.Context, expr string, ts time.Time) (promql.Vector, error) {
	if !s.acquire() {
		return nil, ErrClosed
	}
	defer s.mu.RUnlock()
	qry, err := s.engine.NewInstantQuery(ctx, s.db, nil, expr, ts)
	if err != nil {
		return nil, fmt.Errorf("parse query %q: %w", expr, err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, fmt.Errorf("evaluate query %q: %w", expr, res.Err)
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		out := make(promql.Vector, len(v))
		for i, smp := range v {
			out[i] = smp
			if smp.H != nil {
				out[i].H = smp.H.Copy()
			}
		}
		return out, nil
	case promql.Scalar:
		return promql.Vector{{T: v.T, F: v.V}}, nil
	default:
		return nil, fmt.Errorf("evaluate query %q: result is a %s, not a vector", expr, res.Value.Type())
	}
}

// Series returns the labels of every stored series that matches at least one
// of the selectors (such as `up` or `{job="node"}`), sorted. At least one
// selector is required. The labels are copies the caller owns.
func (s *Server) Series(ctx context.Context, selectors ...string) ([]labels.Labels, error) {
	if len(selectors) == 0 {
		return nil, fmt.Errorf("select series: no selector")
	}
	sets, err := s.parser.ParseMetricSelectors(selectors)
	if err != nil {
		return nil, fmt.Errorf("parse selectors %q: %w", selectors, err)
	}
	if !s.acquire() {
		return nil, ErrClosed
	}
	defer s.mu.RUnlock()
	out, _, err := s.selectSeries(ctx, math.MinInt64, math.MaxInt64, sets)
	return out, err
}

// Exemplars returns the stored exemplars of the series matching the selector,
// over all time. The result is the caller's.
func (s *Server) Exemplars(ctx context.Context, selector string) ([]exemplar.QueryResult, error) {
	ms, err := s.parser.ParseMetricSelector(selector)
	if err != nil {
		return nil, fmt.Errorf("parse selector %q: %w", selector, err)
	}
	if !s.acquire() {
		return nil, ErrClosed
	}
	defer s.mu.RUnlock()
	return s.selectExemplars(ctx, math.MinInt64, math.MaxInt64, [][]*labels.Matcher{ms})
}

// selectExemplars returns the exemplars of series matching any of sets in
// [start, end]. The caller holds s.mu for reading.
func (s *Server) selectExemplars(ctx context.Context, start, end int64, sets [][]*labels.Matcher) ([]exemplar.QueryResult, error) {
	eq, err := s.db.ExemplarQuerier(ctx)
	if err != nil {
		return nil, fmt.Errorf("open exemplar querier: %w", err)
	}
	res, err := eq.Select(start, end, sets...)
	if err != nil {
		return nil, fmt.Errorf("select exemplars: %w", err)
	}
	if res == nil {
		res = []exemplar.QueryResult{}
	}
	return res, nil
}

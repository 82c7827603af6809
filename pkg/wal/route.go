package wal

import (
	"slices"
	"strings"
)

// RouteLabel is the reserved label by which a series record says which
// remote_write endpoints its samples are for: its value is their names,
// sorted and joined by commas (RouteValue). A series without it is for
// every endpoint. The gateway sets it when it accepts a request, so a
// reload or a restart never re-routes what was acknowledged; each queue
// keeps a series only if its own name is listed (Routed) and removes the
// label before relabeling, so it never reaches a receiver. Writers that do
// not route (the scrapes) must not log it.
const RouteLabel = "__rwagent_remote_write_names__"

// RouteValue returns the RouteLabel value for names: sorted, without
// duplicates, joined by commas. Names must not be empty or contain a comma.
func RouteValue(names []string) string {
	s := slices.Clone(names)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), ",")
}

// Routed reports whether the RouteLabel value route lists name.
func Routed(route, name string) bool {
	for route != "" {
		var n string
		n, route, _ = strings.Cut(route, ",")
		if n == name {
			return true
		}
	}
	return false
}

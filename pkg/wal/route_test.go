package wal

import "testing"

func TestRoute(t *testing.T) {
	for _, c := range []struct {
		names  []string
		value  string
		routed map[string]bool
	}{
		{[]string{"b", "a", "b"}, "a,b", map[string]bool{"a": true, "b": true, "c": false, "": false, "a,b": false}},
		{[]string{"amp"}, "amp", map[string]bool{"amp": true, "am": false, "ampx": false}},
		{nil, "", map[string]bool{"": false, "amp": false}},
	} {
		if got := RouteValue(c.names); got != c.value {
			t.Errorf("RouteValue(%q) = %q, want %q", c.names, got, c.value)
		}
		for name, want := range c.routed {
			if got := Routed(c.value, name); got != want {
				t.Errorf("Routed(%q, %q) = %v, want %v", c.value, name, got, want)
			}
		}
	}
}

//go:build all_sd

package main

// Every service discovery Prometheus has, for `-tags all_sd`.
import _ "github.com/prometheus/prometheus/discovery/install"

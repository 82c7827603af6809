package main

// The service discoveries built into rwagent by default are what users on
// AWS run. Each is registered with Prometheus' discovery package by its
// own init, so the choice is made here, by the binary, and not by
// pkg/config, with Prometheus' build tags (its plugins/ directory):
// file and http are always built in; each of the others has a file
// discovery_<name>.go, built unless `-tags remove_all_sd`, and then only
// with `-tags enable_<name>_sd`. `-tags all_sd` adds every other discovery
// Prometheus has (discovery_all.go). A configuration that names one that
// is not built in is refused by name when it is loaded. README "Service
// discovery" lists what each costs in binary size.
import (
	_ "github.com/prometheus/prometheus/discovery/file" // file
	_ "github.com/prometheus/prometheus/discovery/http" // http
)

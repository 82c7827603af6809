//go:build !remove_all_sd || enable_consul_sd

package main

import _ "github.com/prometheus/prometheus/discovery/consul" // consul

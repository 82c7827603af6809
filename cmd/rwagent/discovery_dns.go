//go:build !remove_all_sd || enable_dns_sd

package main

import _ "github.com/prometheus/prometheus/discovery/dns" // dns

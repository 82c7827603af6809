package main

// The service discoveries built into rwagent by default: what users on AWS
// run. Each is registered with Prometheus' discovery package by its own
// init, so the choice is made here, by the binary, and not by pkg/config.
// `-tags all_sd` adds every other discovery Prometheus has
// (discovery_all.go); a configuration that names one that is not built in
// is refused by name when it is loaded. README "Service discovery" lists
// what each costs in binary size.
import (
	_ "github.com/prometheus/prometheus/discovery/aws"        // ec2, ecs, lightsail, elasticache, msk, rds
	_ "github.com/prometheus/prometheus/discovery/consul"     // consul
	_ "github.com/prometheus/prometheus/discovery/dns"        // dns
	_ "github.com/prometheus/prometheus/discovery/file"       // file
	_ "github.com/prometheus/prometheus/discovery/http"       // http
	_ "github.com/prometheus/prometheus/discovery/kubernetes" // kubernetes
)

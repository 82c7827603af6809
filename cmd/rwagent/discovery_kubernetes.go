//go:build !remove_all_sd || enable_kubernetes_sd

package main

import _ "github.com/prometheus/prometheus/discovery/kubernetes" // kubernetes

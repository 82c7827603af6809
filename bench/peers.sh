#!/bin/sh
# peers.sh builds the peer agents of the load benchmark from the Go module
# proxy into a cache directory outside the repository, so anyone can repeat
# the run. Nothing here is committed: only the binaries' paths are printed.
#
#   bench/peers.sh            build whatever is missing
#   BENCH_CACHE=/x bench/peers.sh
#
# Peers: Prometheus v3 (agent mode) and vmagent. The Debian packages
# (prometheus 2.42 with --enable-feature=agent, victoria-metrics 1.79 which
# ships vmagent) are the fallback when a build fails; install them with
#   apt-get install -y prometheus victoria-metrics
set -eu

CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rwagent-bench}
PROM_VERSION=${PROM_VERSION:-v0.316.0}   # Prometheus 3.16.0
VM_VERSION=${VM_VERSION:-v1.151.0}       # newest vmagent that builds with Go 1.26
NICE=${NICE:-nice -n 19}
mkdir -p "$CACHE"

# build NAME VERSION PACKAGE: go install PACKAGE@VERSION into $CACHE/NAME-VERSION.
build() {
	name=$1 version=$2 pkg=$3
	dir="$CACHE/$name-$version"
	if [ -x "$dir/$name" ]; then
		echo "$name $version: $dir/$name (cached)"
		return 0
	fi
	mkdir -p "$dir"
	echo "$name $version: building $pkg@$version (takes minutes)"
	# A private GOPATH module cache would re-download everything; the shared
	# one is fine since go install @version ignores the current module.
	if GOBIN="$dir" GOFLAGS=-mod=mod CGO_ENABLED=0 $NICE go install -trimpath \
		-ldflags "-s -w" "$pkg@$version" >"$dir/build.log" 2>&1; then
		echo "$name $version: $dir/$name"
	else
		echo "$name $version: build failed, see $dir/build.log" >&2
		tail -5 "$dir/build.log" >&2
		return 1
	fi
}

status=0
build prometheus "$PROM_VERSION" github.com/prometheus/prometheus/cmd/prometheus || status=1
build vmagent "$VM_VERSION" github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent || status=1
exit $status

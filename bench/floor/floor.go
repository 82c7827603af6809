// Package floor holds BenchmarkFloor, the lower bound of the benchmark's
// figures: the CPU per sample of parsing the load generator's exposition,
// encoding it as a remote-write 1.0 request, snappy-compressing and signing
// it, in one goroutine, with no WAL, no queue and no network. It has no
// code of its own beyond this comment; see floor_test.go.
package floor

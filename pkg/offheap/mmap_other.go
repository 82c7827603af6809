//go:build !linux

package offheap

import "unsafe"

// mmap maps nothing on this system: every Slice lives on the Go heap.
func mmap(int) unsafe.Pointer { return nil }

// unmap is never called: mmap maps nothing.
func unmap(unsafe.Pointer, int) { panic("offheap: unmap without a mapping") }

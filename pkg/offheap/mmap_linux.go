//go:build linux

package offheap

import (
	"syscall"
	"unsafe"
)

// mmap returns n bytes of zeroed, private, anonymous memory, or nil if the
// kernel refuses (the caller falls back to the heap).
func mmap(n int) unsafe.Pointer {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

// unmap releases n bytes at p, which mmap returned for n bytes. A failure
// means the Slice's own bookkeeping is broken: a broken invariant.
func unmap(p unsafe.Pointer, n int) {
	if err := syscall.Munmap(unsafe.Slice((*byte)(p), n)); err != nil {
		panic("offheap: munmap: " + err.Error())
	}
}

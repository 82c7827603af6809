// Package offheap holds large, long-lived arrays of pointer-free elements
// outside the Go heap, in memory mapped from the kernel.
//
// Why: the agent runs with GOGC=50, so the Go heap may grow to one and a
// half times its live size before a collection; an array on the heap costs
// that much RSS, and the collector visits it. An array here costs its
// touched pages only, once, and the collector never sees it. The cost is
// explicit ownership: every Slice is freed exactly once by its owner.
//
// A Slice smaller than minMapBytes lives on the Go heap (make), so that
// small arrays (a target of a hundred series, an index of 64 slots) spend
// neither a page each nor one of the kernel's limited mappings
// (vm.max_map_count); it moves to a mapping when it grows past that. On
// systems other than Linux, and when mapping fails, every Slice lives on
// the heap.
//
// Mapped memory shows in the process's RSS but not in go_memstats or
// runtime/metrics; Mapped returns how much there is.
//
// The elements must hold no Go pointers (no pointers, strings, slices,
// maps, interfaces, channels or funcs): the collector does not scan mapped
// memory, so what they pointed to could be freed under them. Growing a
// Slice of such a type panics.
package offheap

import (
	"fmt"
	"reflect"
	"sync/atomic"
	"unsafe"
)

// mapped counts the bytes mapped by every Slice of the process. It is the
// package's one variable: the mappings are the process's, as the Go heap
// is, and Mapped reports them as runtime.ReadMemStats reports the heap.
var mapped atomic.Int64

// Mapped returns the bytes currently mapped by Slices, in the whole
// process. It is safe for concurrent use.
func Mapped() int64 { return mapped.Load() }

// minMapBytes is the smallest array kept in a mapping: 16 pages, so that
// rounding up to a page wastes at most a sixteenth.
const minMapBytes = 64 << 10

// Slice is a growable array of T. It is not safe for concurrent use: its
// owner grows and frees it (the elements themselves may be shared as any
// memory is). The zero value is an empty Slice. A Slice must not be
// copied once it holds elements, but moved: two copies would free one
// mapping twice.
type Slice[T any] struct {
	s      []T // cap(s) covers the whole allocation
	mapped bool
}

// Make returns a Slice of n zero elements.
func Make[T any](n int) Slice[T] {
	var a Slice[T]
	a.Resize(n)
	return a
}

// Len returns the number of elements.
func (a *Slice[T]) Len() int { return len(a.s) }

// Cap returns how many elements the Slice holds before it must grow.
func (a *Slice[T]) Cap() int { return cap(a.s) }

// Bytes returns what the Slice costs in memory: on the heap its
// capacity; in a mapping the pages up to its length, as the pages beyond
// cost nothing until written (a Slice that Resize shrank keeps the pages
// it wrote, which this does not count).
func (a *Slice[T]) Bytes() int {
	size := int(unsafe.Sizeof(*new(T)))
	if a.mapped {
		return mapSize(len(a.s) * size)
	}
	return cap(a.s) * size
}

// OffHeap returns the part of Bytes that is off the Go heap: Bytes if the
// Slice is in a mapping, else 0.
func (a *Slice[T]) OffHeap() int {
	if !a.mapped {
		return 0
	}
	return a.Bytes()
}

// Elems returns the elements, to read and write in place. The slice is
// valid until the next Append, Resize, Clip or Free; keep it no longer, and do
// not append to it (that would copy it to the heap, and the copy would not
// be the Slice's).
func (a *Slice[T]) Elems() []T { return a.s }

// Append adds v at the end, growing the allocation if it is full.
func (a *Slice[T]) Append(v T) {
	if len(a.s) == cap(a.s) {
		a.grow(len(a.s) + 1)
	}
	a.s = append(a.s, v) // within capacity: never reallocates
}

// Resize sets the length to n, zeroing elements it adds.
func (a *Slice[T]) Resize(n int) {
	old := len(a.s)
	if n > cap(a.s) {
		a.grow(n) // beyond old, the new allocation is zero: writing zeroes would only touch its pages
		a.s = a.s[:n]
		return
	}
	a.s = a.s[:n]
	if n > old {
		clear(a.s[old:])
	}
}

// Clip gives back the spare capacity of a heap allocation of 1,024
// elements or more that exceeds a sixteenth of its length, for a Slice
// that has stopped growing. A mapping keeps its capacity: its untouched
// pages cost no memory.
func (a *Slice[T]) Clip() {
	if a.mapped || len(a.s) < 1024 || cap(a.s)-len(a.s) <= len(a.s)/16 {
		return
	}
	a.s = append(make([]T, 0, len(a.s)), a.s...)
}

// Free releases the allocation; the Slice is empty afterwards and may be
// used again. Slices returned by Elems before must not be used after it.
func (a *Slice[T]) Free() {
	if a.mapped {
		n := mapSize(cap(a.s) * int(unsafe.Sizeof(*new(T))))
		unmap(unsafe.Pointer(unsafe.SliceData(a.s)), n)
		mapped.Add(-int64(n))
	}
	a.s, a.mapped = nil, false
}

// grow moves the elements to an allocation of at least n elements, and
// at least twice the current one on the heap, a quarter more in a mapping
// (as append grows a large slice), so that appending costs O(1)
// amortised. Pages of a mapping beyond the length are not touched, so its
// spare capacity costs address space but no RSS.
func (a *Slice[T]) grow(n int) {
	mustBePointerFree(reflect.TypeFor[T]())
	size := int(unsafe.Sizeof(*new(T)))
	var s []T
	mappedNow := false
	if size > 0 && max(n, 2*cap(a.s))*size >= minMapBytes {
		n = max(n, cap(a.s)+cap(a.s)/4, (minMapBytes+size-1)/size)
		bytes := mapSize(n * size)
		if p := mmap(bytes); p != nil {
			s = unsafe.Slice((*T)(p), n)[:len(a.s)]
			mapped.Add(int64(bytes))
			mappedNow = true
		}
	}
	if !mappedNow {
		s = make([]T, len(a.s), max(n, 2*cap(a.s), 8))
	}
	copy(s, a.s)
	a.Free()
	a.s, a.mapped = s, mappedNow
}

// pageSize is the granularity of mappings: the smallest page of the
// systems Go supports (larger pages are multiples of it, and the kernel
// rounds a mapping up to them).
const pageSize = 4096

// mapSize returns the size of the mapping that holds n bytes: n rounded
// up to a page. Free unmaps what grow mapped by computing it again from
// the capacity.
func mapSize(n int) int { return (n + pageSize - 1) &^ (pageSize - 1) }

// mustBePointerFree panics if a value of t can hold a Go pointer.
func mustBePointerFree(t reflect.Type) {
	if err := pointerFree(t); err != nil {
		panic(fmt.Sprintf("offheap: %v", err))
	}
}

// pointerFree returns an error naming the first pointer a value of t can
// hold, or nil.
func pointerFree(t reflect.Type) error {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return nil
	case reflect.Array:
		if err := pointerFree(t.Elem()); err != nil {
			return fmt.Errorf("%v: %w", t, err)
		}
		return nil
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if err := pointerFree(f.Type); err != nil {
				return fmt.Errorf("%v field %s: %w", t, f.Name, err)
			}
		}
		return nil
	}
	return fmt.Errorf("%v holds pointers", t)
}

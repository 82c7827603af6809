package offheap

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
)

type pair struct {
	a uint64
	b [3]int32
}

// TestSlice: appending past the heap threshold moves the elements into a
// mapping (Mapped grows) without losing any, Resize zeroes what it adds,
// and Free gives every mapped byte back; a freed Slice can be used again.
func TestSlice(t *testing.T) {
	base := Mapped()
	for _, n := range []int{0, 1, 100, minMapBytes / 24, 3 * minMapBytes / 24, 100_000} {
		var a Slice[pair]
		for i := range n {
			a.Append(pair{a: uint64(i), b: [3]int32{int32(i), -1, 7}})
		}
		if a.Len() != n {
			t.Fatalf("n=%d: Len %d", n, a.Len())
		}
		for i, e := range a.Elems() {
			if e.a != uint64(i) || e.b != [3]int32{int32(i), -1, 7} {
				t.Fatalf("n=%d: element %d is %+v", n, i, e)
			}
		}
		isMapped := runtime.GOOS == "linux" && a.Cap()*24 >= minMapBytes
		if got := Mapped() > base; got != isMapped {
			t.Errorf("n=%d: mapped %v (%d bytes), want %v", n, got, Mapped()-base, isMapped)
		}
		a.Resize(n / 2)
		a.Resize(n + 10)
		for i, e := range a.Elems()[n/2:] {
			if e != (pair{}) {
				t.Fatalf("n=%d: element %d after Resize is %+v, want zero", n, n/2+i, e)
			}
		}
		a.Free()
		if a.Len() != 0 || Mapped() != base {
			t.Fatalf("n=%d: after Free Len %d, %d bytes still mapped", n, a.Len(), Mapped()-base)
		}
		a.Append(pair{a: 1})
		if a.Len() != 1 || a.Elems()[0].a != 1 {
			t.Fatalf("n=%d: reused Slice holds %v", n, a.Elems())
		}
		a.Free()
	}
}

// TestMake: Make returns n zero elements, mapped when large.
func TestMake(t *testing.T) {
	base := Mapped()
	a := Make[uint32](1 << 20)
	if a.Len() != 1<<20 || a.Cap() < 1<<20 {
		t.Fatalf("Make(1<<20): Len %d, Cap %d", a.Len(), a.Cap())
	}
	for i, v := range a.Elems() {
		if v != 0 {
			t.Fatalf("element %d is %d", i, v)
		}
	}
	a.Elems()[1<<20-1] = 5 // the last page is writable
	if runtime.GOOS == "linux" && Mapped()-base != 4<<20 {
		t.Errorf("Make(1<<20) of uint32 mapped %d bytes, want %d", Mapped()-base, 4<<20)
	}
	a.Free()
	a.Free() // a freed Slice is empty: freeing it again frees nothing
	if Mapped() != base {
		t.Errorf("%d bytes mapped after Free", Mapped()-base)
	}
}

// TestClip: a heap allocation with more than a sixteenth spare is cut to
// its length; a mapping keeps its capacity.
func TestClip(t *testing.T) {
	for _, c := range []struct {
		n, want int // elements appended, capacity after Clip
	}{
		{1000, 1024},  // too small to bother
		{1025, 1025},  // cap 2048 on the heap: cut
		{2000, 2048},  // within a sixteenth
		{100_000, -1}, // mapped (on linux): kept
	} {
		var a Slice[pair]
		for range c.n {
			a.Append(pair{})
		}
		before := a.Cap()
		a.Clip()
		want := c.want
		if want < 0 {
			want = before
			if runtime.GOOS != "linux" {
				want = c.n
			}
		}
		if a.Cap() != want || a.Len() != c.n {
			t.Errorf("%d appended: after Clip Len %d, Cap %d, want %d, %d", c.n, a.Len(), a.Cap(), c.n, want)
		}
		a.Free()
	}
}

// TestPointerFree: element types that can hold a Go pointer are refused,
// naming the field; others are accepted.
func TestPointerFree(t *testing.T) {
	type inner struct{ s string }
	type nested struct {
		n int
		i [2]inner
	}
	for _, c := range []struct {
		t    reflect.Type
		want string // "" for accepted
	}{
		{reflect.TypeFor[uint32](), ""},
		{reflect.TypeFor[pair](), ""},
		{reflect.TypeFor[[4]float64](), ""},
		{reflect.TypeFor[struct{}](), ""},
		{reflect.TypeFor[*int](), "*int holds pointers"},
		{reflect.TypeFor[string](), "string holds pointers"},
		{reflect.TypeFor[[]byte](), "[]uint8 holds pointers"},
		{reflect.TypeFor[map[int]int](), "holds pointers"},
		{reflect.TypeFor[any](), "interface {} holds pointers"},
		{reflect.TypeFor[func()](), "holds pointers"},
		{reflect.TypeFor[chan int](), "holds pointers"},
		{reflect.TypeFor[nested](), "field i: [2]offheap.inner: offheap.inner field s: string holds pointers"},
	} {
		err := pointerFree(c.t)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v, want accepted", c.t, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: %v, want an error containing %q", c.t, err, c.want)
		}
	}
}

// TestPointersPanic: growing a Slice of a type with pointers panics before
// anything is allocated.
func TestPointersPanic(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Append of a *int did not panic")
		}
	}()
	var a Slice[*int]
	a.Append(nil)
}

func BenchmarkAppend(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		var a Slice[pair]
		for i := range 100_000 {
			a.Append(pair{a: uint64(i)})
		}
		a.Free()
	}
}

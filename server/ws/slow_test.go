package ws

import (
	"net"
	"testing"
)

// TestFrameBufRest: after a write cut short, only the rest of the frame in
// progress precedes the close frame.
func TestFrameBufRest(t *testing.T) {
	t.Parallel()
	var fb FrameBuf
	fb.control(opPong, "pp")                            // bytes 0-4
	fb.Text([]byte("hello"))                            // 4-11
	fb.Text(nil)                                        // 11-13
	fb.Owned(append(AppendTextHeader(nil, 2), "[]"...)) // 13-17: "[]"
	fb.Owned(append(AppendTextHeader(nil, 2), "[]"...)) // 17-21: "[]" (a Catalyst frame of one empty item)
	if fb.size != 21 {
		t.Fatalf("size %d", fb.size)
	}
	all := bytesOf(fb.iov[:fb.niov])
	for written, end := range map[int]int{0: 0, 2: 4, 4: 4, 5: 11, 10: 11, 11: 11, 12: 13, 14: 17, 17: 17, 19: 21, 21: 21} {
		fb.nb = net.Buffers{all[written:]}
		if got, want := bytesOf(fb.rest()), all[written:end]; string(got) != string(want) {
			t.Errorf("%d bytes written: rest %q, want %q", written, got, want)
		}
	}
}

func bytesOf(nb net.Buffers) []byte {
	var b []byte
	for _, v := range nb {
		b = append(b, v...)
	}
	return b
}

package ws

import (
	"testing"
	"time"
)

// maskedFrame is a client frame: FIN, opcode op, masked payload (mask key
// 1 2 3 4), for payloads under 126 bytes.
func maskedFrame(op byte, payload []byte) []byte {
	key := []byte{1, 2, 3, 4}
	b := []byte{0x80 | op, 0x80 | byte(len(payload))}
	b = append(b, key...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// FuzzClientFrames is S7: arbitrary bytes from a client after the handshake
// (malformed frames and junk). The server must not panic, must end the
// connection once the client goes, and the read loop must return: goleak in
// TestMain catches a goroutine left behind.
func FuzzClientFrames(f *testing.F) {
	for _, seed := range [][]byte{
		maskedFrame(0x1, []byte(`{"action":"ping"}`)),
		maskedFrame(0x1, []byte{0xff, 0xfe}),                         // text that is not UTF-8
		maskedFrame(0x3, nil),                                        // reserved opcode
		maskedFrame(0x9, make([]byte, 125)),                          // ping at the control limit
		{0x89, 0xfe, 0x00, 0x80, 1, 2, 3, 4},                         // ping over 125 bytes (extended length)
		maskedFrame(0x8, []byte{0x03, 0xe7}),                         // close with code 999
		{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'},                        // unmasked client frame
		{0x01, 0x81, 1, 2, 3, 4, 'a' ^ 1},                            // a fragment, never continued
		{0x80, 0x81, 1, 2, 3, 4, 'a' ^ 1},                            // a continuation without a start
		{0xf1, 0x80, 1, 2, 3, 4},                                     // RSV bits set
		{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // a 2^63-byte binary frame
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, junk []byte) {
		p := newWSPair(t, Config{}, true)
		nc := p.client.NetConn()
		_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = nc.Write(junk) // the server may close first
		_ = nc.Close()
		select {
		case <-p.ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("the server's connection did not end after junk %x", junk)
		}
	})
}

package state

import (
	"bytes"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []record{
		{},
		{seq: 1, stamp: 1, reply: []byte("reply")},
		{seq: 1<<64 - 1, stamp: 1<<64 - 1, reply: bytes.Repeat([]byte{0xff}, 1000)},
	} {
		got, err := decodeRecord(r.encode())
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", r, err)
		}
		if got.seq != r.seq || got.stamp != r.stamp || !bytes.Equal(got.reply, r.reply) || got.reply == nil {
			t.Fatalf("decode(encode(%+v)) = %+v", r, got)
		}
	}
}

// FuzzDecodeRecord feeds arbitrary bytes, as a damaged store could hold: the
// decoder must return an error or a record that encodes back to its input.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte{})
	f.Add(record{seq: 3, stamp: 9, reply: []byte("hi")}.encode())
	f.Add([]byte{recordFormat, 0x80})
	f.Add([]byte{2, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if again := r.encode(); !bytes.Equal(again, b) {
			// Varints have one shortest form; a longer one read fine but
			// encodes differently. Decoding it again must agree.
			r2, err := decodeRecord(again)
			if err != nil || r2.seq != r.seq || r2.stamp != r.stamp || !bytes.Equal(r2.reply, r.reply) {
				t.Fatalf("decode(%x) = %+v, which re-encodes to %x that decodes to %+v, %v", b, r, again, r2, err)
			}
		}
	})
}

package state

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

// sameRecord reports whether a and b hold the same stamp, floor and calls.
func sameRecord(a, b record) bool {
	return a.stamp == b.stamp && a.floor == b.floor &&
		slices.EqualFunc(a.calls, b.calls, func(x, y *call) bool {
			return x.seq == y.seq && x.unanswered == y.unanswered && bytes.Equal(x.reply, y.reply)
		})
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []record{
		{},
		{stamp: 1, calls: []*call{{seq: 0, reply: []byte{}}}},
		{stamp: 1, floor: 1, calls: []*call{{seq: 1, reply: []byte("reply")}}},
		{stamp: 7, floor: 3, calls: []*call{{seq: 3, reply: []byte("a")}, {seq: 9, reply: []byte{}}, {seq: 10, reply: []byte("c")}}},
		{stamp: 1<<64 - 1, floor: 1<<64 - 2, calls: []*call{
			{seq: 1<<64 - 2, reply: bytes.Repeat([]byte{0xff}, 1000)},
			{seq: 1<<64 - 1, reply: []byte("last")},
		}},
		{stamp: 2, floor: 1, calls: []*call{{seq: 1, unanswered: true}}},
		{stamp: 5, calls: []*call{{seq: 2, reply: []byte{}}, {seq: 3, unanswered: true}, {seq: 4, reply: []byte("four")}}},
	} {
		b := r.encode()
		if len(b) != cap(b) {
			t.Errorf("encode(%+v) took %d bytes of %d allocated; want the exact size", r, len(b), cap(b))
		}
		// Only a record with an unanswered call needs the third format,
		// which builds before it cannot read.
		format := byte(recordFormatWindow)
		if slices.ContainsFunc(r.calls, func(c *call) bool { return c.unanswered }) {
			format = recordFormatUnanswered
		}
		if b[0] != format {
			t.Errorf("encode(%+v) is in format %d, want %d", r, b[0], format)
		}
		got, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", r, err)
		}
		if !sameRecord(got, r) {
			t.Fatalf("decode(encode(%+v)) = %+v", r, got)
		}
		for _, c := range got.calls {
			if c.reply == nil && !c.unanswered {
				t.Fatalf("decode(encode(%+v)) has a nil reply; stores return empty values", r)
			}
		}
	}
}

// TestRecordFormatLast reads a record as the previous build wrote it: one
// call, and everything below it stale.
func TestRecordFormatLast(t *testing.T) {
	b := []byte{recordFormatLast}
	b = binary.AppendUvarint(b, 5) // seq
	b = binary.AppendUvarint(b, 9) // stamp
	b = append(b, "five"...)
	got, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	want := record{stamp: 9, floor: 5, calls: []*call{{seq: 5, reply: []byte("five")}}}
	if !sameRecord(got, want) {
		t.Fatalf("decode(%x) = %+v, want %+v", b, got, want)
	}
	if edge := got.lowEdge(DefaultWindowPerClient); edge != 5 {
		t.Fatalf("low edge of an old record = %d, want 5: older calls stay stale", edge)
	}
}

func TestRecordWindow(t *testing.T) {
	var r record
	for _, seq := range []uint64{5, 2, 9, 7} {
		r = r.with(call{seq: seq, reply: []byte{byte(seq)}}, 3)
	}
	// 2 went: the window holds the three highest, and the floor is above 2.
	want := record{floor: 3, calls: []*call{{seq: 5, reply: []byte{5}}, {seq: 7, reply: []byte{7}}, {seq: 9, reply: []byte{9}}}}
	if !sameRecord(r, want) {
		t.Fatalf("window = %+v, want %+v", r, want)
	}
	if edge := r.lowEdge(3); edge != 5 {
		t.Errorf("lowEdge(3) = %d, want 5 (a full window's lowest call)", edge)
	}
	if edge := r.lowEdge(10); edge != 3 {
		t.Errorf("lowEdge(10) = %d, want the floor 3", edge)
	}
	// with copies: the record it started from is unchanged.
	before := r
	_ = r.with(call{seq: 8}, 3)
	_ = r.with(call{seq: 7, reply: []byte{70}}, 3)
	if !sameRecord(before, want) {
		t.Fatalf("with changed its receiver: %+v", before)
	}
}

func TestDecodeRecordRefusesDamage(t *testing.T) {
	window := func(stamp, floor, n uint64, rest ...byte) []byte {
		b := []byte{recordFormatWindow}
		b = binary.AppendUvarint(b, stamp)
		b = binary.AppendUvarint(b, floor)
		b = binary.AppendUvarint(b, n)
		return append(b, rest...)
	}
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"empty":             {nil, "empty"},
		"unknown format":    {[]byte{9, 1, 1}, "format 9"},
		"old truncated":     {[]byte{recordFormatLast, 0x80}, "sequence number"},
		"truncated header":  {[]byte{recordFormatWindow, 1}, "floor"},
		"count beyond data": {window(1, 0, 1000, 1, 0), "calls in"},
		"reply beyond data": {window(1, 0, 1, 1, 5, 'a'), "reply of 5 bytes"},
		"duplicate call":    {window(1, 0, 2, 1, 0, 0, 0), "recorded twice"},
		"below floor":       {window(1, 4, 1, 3, 0), "below the floor"},
		"trailing bytes":    {window(1, 0, 1, 1, 0, 'x'), "after the last call"},
		"sequence overflow": {window(1, 0, 2, append(binary.AppendUvarint(nil, 1<<64-1), 0, 1, 0)...), "overflows"},
		"truncated call":    {window(1, 0, 1, 0x80, 0x80), "sequence number"},
		"bad reply length":  {window(1, 0, 1, 1, 0x80), "reply length"},
		"unanswered format, reply beyond data": {
			append([]byte{recordFormatUnanswered}, window(1, 0, 1, 1, 6, 'a')[1:]...), "reply of 5 bytes",
		},
		"unanswered format, bad reply length": {
			append([]byte{recordFormatUnanswered}, window(1, 0, 1, 1, 0x80)[1:]...), "reply length",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeRecord(tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode(%x): err = %v, want one saying %q", tc.b, err, tc.want)
			}
		})
	}
}

// FuzzDecodeRecord feeds arbitrary bytes, as a damaged store could hold: the
// decoder must return an error or a record whose calls ascend from its floor
// and that survives encoding and decoding again unchanged.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte{})
	f.Add(record{stamp: 9, floor: 2, calls: []*call{{seq: 3, reply: []byte("hi")}, {seq: 5}}}.encode())
	f.Add(record{stamp: 9, floor: 2, calls: []*call{{seq: 3, unanswered: true}, {seq: 5, reply: []byte("hi")}}}.encode())
	f.Add([]byte{recordFormatLast, 3, 9, 'h', 'i'})
	f.Add([]byte{recordFormatWindow, 0x80})
	f.Add([]byte{recordFormatWindow, 1, 0, 2, 1, 0, 0, 0})
	f.Add([]byte{9, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		for i, c := range r.calls {
			if c.seq < r.floor || (i > 0 && c.seq <= r.calls[i-1].seq) {
				t.Fatalf("decode(%x) = %+v: calls do not ascend from the floor", b, r)
			}
		}
		// Varints have one shortest form and old records are rewritten
		// in the new format, so the bytes may differ; the record not.
		again := r.encode()
		if len(again) != cap(again) {
			t.Fatalf("encode(%+v) took %d bytes of %d allocated; want the exact size", r, len(again), cap(again))
		}
		r2, err := decodeRecord(again)
		if err != nil || !sameRecord(r, r2) {
			t.Fatalf("decode(%x) = %+v, which re-encodes to %x that decodes to %+v, %v", b, r, again, r2, err)
		}
		if b[0] == recordFormatWindow && len(again) > len(b) {
			t.Fatalf("decode(%x) re-encodes longer: %x", b, again)
		}
	})
}

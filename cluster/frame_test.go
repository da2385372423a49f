package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
)

// sampleFrames covers every frame type and field.
func sampleFrames() []frame {
	return []frame{
		{typ: frameHello, node: "node-a"},
		{typ: frameHello, node: "node-a", hello: helloNames},
		{typ: frameHello, node: "node-b", hello: helloBye},
		{typ: frameHello, node: "node-b", hello: helloNames | helloBye},
		{typ: frameHello, node: "node-b", hello: helloLeaving},
		{typ: frameHello, node: "node-c", message: "10.0.0.7:7947", hello: helloNames},                                                    // a dialer's first hello says its address
		{typ: frameHello, node: "node-c", message: "10.0.0.7:7947", identity: "5f0e2b9c41d3a877", hello: helloNames},                      // and its incarnation
		{typ: frameHello, node: "node-a", identity: "5f0e2b9c41d3a877", hello: helloSuperseded},                                           // the answer to a replaced start
		{typ: frameHello, node: "node-b", identity: "0c4d1e7a9b3f2685", message: "5f0e2b9c41d3a877", hello: helloAskRelease},              // a joiner asks for a release
		{typ: frameHello, node: "node-a", identity: "5f0e2b9c41d3a877", message: "0c4d1e7a9b3f2685", hello: helloReleased},                // and gets it
		{typ: frameHello, node: "node-a", identity: "5f0e2b9c41d3a877", message: "0c4d1e7a9b3f2685", hello: helloReleased | helloLeaving}, // from a leaver
		{typ: frameRequest, id: 1, kind: "pkg.Counter", identity: "user-42", method: "/pkg.Counter/Add",
			payload: []byte{8, 5}, timeout: 1500 * time.Millisecond},
		{typ: frameRequest, id: 1 << 60, kind: "k", method: "/k/M"}, // empty identity and payload
		{typ: frameRequest, id: 5, kind: "k", identity: "i", method: "/k/M",
			chain: []actKey{{"pkg.A", "a1"}, {"pkg.B", ""}}},
		{typ: frameRequest, id: 6, kind: "k", identity: "i", method: "/k/M",
			stamp: stamp{client: "node-a", seq: 1<<64 - 1}},
		{typ: frameRequest, kind: "pkg.Player", identity: "p1", method: "/pkg.Player/Move", payload: []byte{8, 1},
			oneWay: oneWaySent},
		{typ: frameRequest, kind: "pkg.Player", identity: "p2", method: "/pkg.Player/Move", oneWay: oneWayForwarded},
		{typ: frameRequest, kind: "pkg.Player", identity: "p3", method: "/pkg.Player/Move", oneWay: oneWayForwardedTwice},
		{typ: frameRequest, id: 7, kind: "k", identity: "i", method: "/k/M", message: metadataOf("traceparent", "00-0af7-01", "tenant", "")},
		{typ: frameRequest, kind: "k", identity: "i", method: "/k/M", oneWay: oneWaySent, message: metadataOf("k", "v")},
		{typ: frameResponse, id: 2, payload: []byte("resp")},
		{typ: frameResponse, id: 3, code: codes.NotFound, message: "no such thing", reason: reasonUnknownMethod},
		{typ: frameCancel, id: 4},
		{typ: frameCancel, id: 5, code: codes.DeadlineExceeded}, // the caller's deadline passed
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var batch []byte
	want := sampleFrames()
	for i := range want {
		batch = appendFrame(batch, &want[i])
	}
	var got []frame
	if err := decodeBatch(batch, func(f *frame) { got = append(got, *f) }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
	}
}

// TestFrameLengthPrefixes checks appendFrame's one pass (see appendFrame)
// on frames around the sizes where it changes course: a length prefix of
// one byte or more, small content or large. Each frame must encode as its
// size followed by its fields, after what the batch held already, within
// sizeBound, and decode back.
func TestFrameLengthPrefixes(t *testing.T) {
	var sizes []int
	for _, around := range []int{0, 100, 128, smallFrameContent, 1 << 14, 1 << 20} {
		for d := -30; d <= 30; d++ {
			if around+d >= 0 {
				sizes = append(sizes, around+d)
			}
		}
	}
	held := []byte("frames before")
	for _, n := range sizes {
		for _, identityLen := range []int{1, 100} {
			f := frame{typ: frameRequest, id: 7, kind: "pkg.Counter", identity: strings.Repeat("i", identityLen),
				method: "/pkg.Counter/Add", payload: bytes.Repeat([]byte{0xfe}, n), timeout: time.Second,
				chain: []actKey{{"pkg.A", "a1"}}, stamp: stamp{client: "node-a", seq: 9}}
			if n == 0 {
				f.payload = nil // as decoded
			}
			want := appendFrameFields(protowire.AppendVarint(slices.Clone(held), uint64(f.size())), &f)
			got := appendFrame(slices.Clone(held), &f)
			if !bytes.Equal(got, want) {
				t.Fatalf("payload %d, identity %d: one pass wrote %d bytes, unlike the sized encoding (%d bytes)",
					n, identityLen, len(got), len(want))
			}
			if len(got)-len(held) > f.sizeBound() {
				t.Fatalf("payload %d, identity %d: %d bytes, over sizeBound %d", n, identityLen, len(got)-len(held), f.sizeBound())
			}
			var decoded []frame
			if err := decodeBatch(got[len(held):], func(d *frame) { decoded = append(decoded, *d) }); err != nil {
				t.Fatalf("payload %d, identity %d: %v", n, identityLen, err)
			}
			if len(decoded) != 1 || !reflect.DeepEqual(decoded[0], f) {
				t.Fatalf("payload %d, identity %d: decoded %d frames, or not the one sent", n, identityLen, len(decoded))
			}
		}
	}
}

// TestFrameSizeBound checks sizeBound against every sample frame with its
// names as strings, as definitions of ids and as ids, and against frames
// whose every field is at its largest.
func TestFrameSizeBound(t *testing.T) {
	long := strings.Repeat("n", 300)
	frames := append(sampleFrames(), frame{typ: frameResponse, id: 1<<64 - 1, kind: long, identity: long, method: long,
		payload: []byte(long), timeout: time.Duration(1<<63 - 1), code: maxCode, message: long,
		reason: reasonCount - 1, node: long, chain: []actKey{{long, long}, {"", ""}},
		stamp: stamp{client: long, seq: 1<<64 - 1}, oneWay: oneWaySent, hello: helloNames | helloBye | helloLeaving | helloSuperseded | helloAskRelease | helloReleased,
		refs: nameRefs{kind: nameRef{maxNameID, true}, method: nameRef{maxNameID, true}, client: nameRef{maxNameID, true}}})
	var d nameDict
	d.on = true
	for round := range 3 {
		for i := range frames {
			f := frames[i]
			if i < len(frames)-1 {
				f.refs = nameRefs{}
				if round > 0 {
					f.refs = d.refs(&f)
				}
			}
			if got, bound := len(appendFrame(nil, &f)), f.sizeBound(); got > bound {
				t.Fatalf("round %d, frame %d: %d bytes, over sizeBound %d", round, i, got, bound)
			}
		}
	}
}

func TestDecodeSkipsUnknownFields(t *testing.T) {
	b := protowire.AppendTag(nil, fieldType, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(frameCancel))
	b = protowire.AppendTag(b, 99, protowire.BytesType) // from a newer peer
	b = protowire.AppendString(b, "future")
	b = protowire.AppendTag(b, fieldID, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	batch := protowire.AppendBytes(nil, b)
	var got frame
	if err := decodeBatch(batch, func(f *frame) { got = *f }); err != nil {
		t.Fatal(err)
	}
	if got.typ != frameCancel || got.id != 7 {
		t.Fatalf("got %+v", got)
	}
}

// TestEverySentinelCrossesTheWire: an error wrapping any sentinel with a
// reason code, as a grain may return one it got itself (ErrMailboxFull
// from a Send, say), reaches a caller on another node with its code,
// message and sentinel: through reasonOf, a reply frame's encoding and
// decoding, and fromWire. ErrNodeClosed reads as ErrUnavailable there (a
// closing peer is an unavailable owner to its callers).
func TestEverySentinelCrossesTheWire(t *testing.T) {
	for r := reasonNone + 1; r < reasonCount; r++ {
		sentinel := reasonErrors[r]
		sent := fmt.Errorf("grain: %w", newError(codes.Aborted, sentinel, "cluster: %v", sentinel))
		f := frame{typ: frameResponse, id: 9, code: codes.Aborted, message: sent.Error(), reason: reasonOf(sent)}
		var got frame
		if err := decodeBatch(appendFrame(nil, &f), func(d *frame) { got = *d }); err != nil {
			t.Fatalf("%v: %v", sentinel, err)
		}
		want := sentinel
		if r == reasonNodeClosed {
			want = ErrUnavailable
		}
		err := fromWire(got.code, got.message, got.reason)
		if !errors.Is(err, want) || status.Code(err) != codes.Aborted || err.Error() != sent.Error() {
			t.Fatalf("%v crossed the wire as %v (code %v), want it with code Aborted and the message %q", sentinel, err, status.Code(err), sent.Error())
		}
	}
	if !errors.Is(fromWire(codes.Unavailable, "x", reasonStateNotCommitted), storage.ErrNotCommitted) {
		t.Fatal("a commit that committed nothing lost storage.ErrNotCommitted on the wire")
	}
}

// TestUnknownReasonsStillDecode: a reply whose reason this node does not
// know (a sentinel added by a newer peer) is no corrupt frame: the caller
// gets its code and message, without a sentinel, and the stream lives on.
func TestUnknownReasonsStillDecode(t *testing.T) {
	for _, r := range []uint64{uint64(reasonCount), 200, 1 << 40} {
		b := protowire.AppendTag(nil, fieldType, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(frameResponse))
		b = protowire.AppendTag(b, fieldID, protowire.VarintType)
		b = protowire.AppendVarint(b, 7)
		b = protowire.AppendTag(b, fieldCode, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(codes.Unavailable))
		b = protowire.AppendTag(b, fieldMessage, protowire.BytesType)
		b = protowire.AppendString(b, "cluster: something new")
		b = protowire.AppendTag(b, fieldReason, protowire.VarintType)
		b = protowire.AppendVarint(b, r)
		var got frame
		if err := decodeBatch(protowire.AppendBytes(nil, b), func(f *frame) { got = *f }); err != nil {
			t.Fatalf("reason %d: %v", r, err)
		}
		if got.typ != frameResponse || got.id != 7 || got.reason != reasonNone {
			t.Fatalf("reason %d: got %+v, want a response with no reason", r, got)
		}
		err := fromWire(got.code, got.message, got.reason)
		var e *Error
		if status.Code(err) != codes.Unavailable || err.Error() != "rpc error: code = Unavailable desc = cluster: something new" || errors.As(err, &e) {
			t.Fatalf("reason %d: the caller gets %#v, want the code and message alone", r, err)
		}
	}
}

// TestOldRequestFramesStillDecode checks that a request encoded without the
// one-way field, as a peer from before it sends it, decodes as a call, and
// that a flag of any non-zero value means one-way, as a proto bool does:
// 1 as sent, 2 as forwarded, 3 and more as forwarded twice (see oneWayMark).
func TestOldRequestFramesStillDecode(t *testing.T) {
	varint := func(b []byte, num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
	}
	str := func(b []byte, num protowire.Number, v string) []byte {
		return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	old := varint(nil, fieldType, uint64(frameRequest))
	old = varint(old, fieldID, 9)
	old = str(old, fieldKind, "k")
	old = str(old, fieldMethod, "/k/M")
	for _, tc := range []struct {
		name   string
		frame  []byte
		oneWay oneWayMark
	}{
		{"old request", old, twoWay},
		{"flag 0", varint(slices.Clone(old), fieldOneWay, 0), twoWay},
		{"flag 1", varint(slices.Clone(old), fieldOneWay, 1), oneWaySent},
		{"forwarded", varint(slices.Clone(old), fieldOneWay, 2), oneWayForwarded},
		{"forwarded twice", varint(slices.Clone(old), fieldOneWay, 3), oneWayForwardedTwice},
		{"forwarded three times", varint(slices.Clone(old), fieldOneWay, 4), oneWayForwardedThrice},
		{"flag 7", varint(slices.Clone(old), fieldOneWay, 7), oneWayForwardedThrice},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got frame
			if err := decodeBatch(protowire.AppendBytes(nil, tc.frame), func(f *frame) { got = *f }); err != nil {
				t.Fatal(err)
			}
			want := frame{typ: frameRequest, id: 9, kind: "k", method: "/k/M", oneWay: tc.oneWay}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded %+v, want %+v", got, want)
			}
		})
	}
}

func TestDecodeRejectsCorruptFrames(t *testing.T) {
	valid := appendFrame(nil, &frame{typ: frameRequest, id: 1, kind: "k", method: "/k/M"})
	frameOf := func(fields ...[]byte) []byte {
		return protowire.AppendBytes(nil, bytes.Join(fields, nil))
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	for _, tc := range []struct {
		name  string
		batch []byte
	}{
		{"truncated length", []byte{0x80}},
		{"length past the end", append([]byte{50}, valid[1:]...)},
		{"truncated frame", valid[:len(valid)-2]},
		{"no type", frameOf(varint(fieldID, 1))},
		{"unknown type", frameOf(varint(fieldType, 9))},
		// Replies a conn makes for its own calls (see conn.call): a peer
		// must not be able to end a call with one.
		{"a closed conn's reply", frameOf(varint(fieldType, uint64(frameClosed)), varint(fieldID, 1))},
		{"an expired deadline's reply", frameOf(varint(fieldType, uint64(frameExpired)), varint(fieldID, 1))},
		{"bad wire type", frameOf(protowire.AppendString(protowire.AppendTag(nil, fieldType, protowire.BytesType), "x"))},
		{"bad status code", frameOf(varint(fieldType, uint64(frameResponse)), varint(fieldCode, 99))},
		{"request without method", frameOf(varint(fieldType, uint64(frameRequest)))},
		{"hello without name", frameOf(varint(fieldType, uint64(frameHello)))},
		{"huge timeout", frameOf(varint(fieldType, uint64(frameRequest)), varint(fieldTimeout, 1<<63))},
		{"bad tag", frameOf([]byte{0})},
		{"caller identity without kind", frameOf(varint(fieldType, uint64(frameRequest)),
			protowire.AppendString(protowire.AppendTag(nil, fieldChainIdentity, protowire.BytesType), "x"))},
		{"one-way response", frameOf(varint(fieldType, uint64(frameResponse)), varint(fieldOneWay, 1))},
		{"one-way cancel", frameOf(varint(fieldType, uint64(frameCancel)), varint(fieldOneWay, 1))},
		{"one-way request without method", frameOf(varint(fieldType, uint64(frameRequest)), varint(fieldOneWay, 1))},
		{"one-way flag as bytes", frameOf(varint(fieldType, uint64(frameRequest)),
			protowire.AppendString(protowire.AppendTag(nil, fieldOneWay, protowire.BytesType), "x"))},
		// A stream's name dictionary (see nameRefs), decoded with a fresh
		// table unless noted.
		{"name id on a stream without a dictionary", frameOf(varint(fieldType, uint64(frameCancel)), varint(fieldKindRef, 1))},
		{"unknown name id", frameOf(varint(fieldType, uint64(frameRequest)), varint(fieldKindRef, 1), varint(fieldMethodRef, 1))},
		{"name defined out of order", frameOf(varint(fieldType, uint64(frameRequest)),
			protowire.AppendString(protowire.AppendTag(nil, fieldKind, protowire.BytesType), "k"), varint(fieldKindRef, 2),
			protowire.AppendString(protowire.AppendTag(nil, fieldMethod, protowire.BytesType), "/k/M"))},
		{"name id 0", frameOf(varint(fieldType, uint64(frameRequest)), varint(fieldClientRef, 0))},
		{"name id too large", frameOf(varint(fieldType, uint64(frameRequest)), varint(fieldMethodRef, maxNameID+1))},
		{"name id as bytes", frameOf(varint(fieldType, uint64(frameRequest)),
			protowire.AppendString(protowire.AppendTag(nil, fieldKindRef, protowire.BytesType), "x"))},
		// A request's metadata (see Metadata), in its fieldMessage.
		{"metadata cut short", requestWithMetadata("\x05key")},
		{"metadata key without a value", requestWithMetadata("\x03key")},
		{"metadata with an empty key", requestWithMetadata("\x00\x01v")},
		{"metadata that is not UTF-8", requestWithMetadata("\x01k\x01\xff")},
		{"metadata past MaxMetadataBytes", requestWithMetadata(metadataOf("k", strings.Repeat("v", MaxMetadataBytes)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var names *nameTable
			if !strings.HasPrefix(tc.name, "name id on a stream without") {
				names = &nameTable{}
			}
			err := decodeBatchNames(tc.batch, names, func(*frame) {})
			if !errors.Is(err, ErrCorruptFrame) {
				t.Fatalf("err = %v, want ErrCorruptFrame", err)
			}
		})
	}
}

// TestFrameNameDictionary sends frames through a stream's name dictionary
// three times: the first time kinds and methods are defined, the second
// time client IDs (which get an id only when they come again), the third
// time only ids go, and the reader gets the same frames every time.
func TestFrameNameDictionary(t *testing.T) {
	var d nameDict
	d.on = true
	var names nameTable
	var sizes [3]int
	for round := range 3 {
		var batch []byte
		want := sampleFrames()
		for i := range want {
			bound := want[i].sizeBound()
			want[i].refs = d.refs(&want[i])
			before := len(batch)
			batch = appendFrame(batch, &want[i])
			if got := len(batch) - before; got > bound {
				t.Fatalf("round %d, frame %d: %d bytes with ids, over its bound %d", round, i, got, bound)
			}
		}
		sizes[round] = len(batch)
		var got []frame
		if err := decodeBatchNames(batch, &names, func(f *frame) { got = append(got, *f) }); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: decoded\n%+v\nwant\n%+v", round, got, want)
		}
		for _, f := range got {
			if round == 2 && (f.refs.kind.define || f.refs.method.define || f.refs.client.define) {
				t.Fatalf("round 2 defined a name again: %+v", f)
			}
		}
	}
	if sizes[2] >= sizes[0] {
		t.Fatalf("batch of ids is %d bytes, of names %d", sizes[2], sizes[0])
	}
	if len(names.defs) != len(d.ids) {
		t.Fatalf("reader has %d names, writer defined %d", len(names.defs), len(d.ids))
	}
}

// TestNameDictionaryClientIDs checks that client IDs used once (an inner
// call's) do not take ids, and that one used again does.
func TestNameDictionaryClientIDs(t *testing.T) {
	var d nameDict
	d.on = true
	for i := range 3 * maxNameID {
		f := frame{typ: frameRequest, kind: "k", method: "/k/M", stamp: stamp{client: fmt.Sprintf("grain:%d", i), seq: 1}}
		if r := d.refs(&f); r.client.id != 0 {
			t.Fatalf("call %d: a one-off client ID got id %d", i, r.client.id)
		}
	}
	own := frame{typ: frameRequest, kind: "k", method: "/k/M", stamp: stamp{client: "node-a", seq: 1}}
	other := frame{typ: frameRequest, kind: "k", method: "/k/M", stamp: stamp{client: "grain:x", seq: 1}}
	if r := d.refs(&own); r.client.id != 0 {
		t.Fatalf("the first use of a client ID got id %d", r.client.id)
	}
	d.refs(&other)
	if r := d.refs(&own); r.client.id == 0 || !r.client.define {
		t.Fatalf("the second use of a client ID was not defined: %+v", r.client)
	}
	if len(d.ids) != 3 { // k, /k/M, node-a
		t.Fatalf("%d names defined, want 3", len(d.ids))
	}
}

// TestNameDictionaryBound checks that a writer stops defining names at
// maxNameID and sends the rest as strings, which the reader takes.
func TestNameDictionaryBound(t *testing.T) {
	var d nameDict
	d.on = true
	var names nameTable
	for i := range maxNameID + 10 {
		f := frame{typ: frameRequest, kind: fmt.Sprintf("kind-%d", i), method: "/k/M"}
		f.refs = d.refs(&f)
		var got frame
		if err := decodeBatchNames(appendFrame(nil, &f), &names, func(fr *frame) { got = *fr }); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got.kind != f.kind || got.method != "/k/M" {
			t.Fatalf("frame %d: decoded %q %q", i, got.kind, got.method)
		}
	}
	if len(d.ids) != maxNameID || len(names.defs) != maxNameID {
		t.Fatalf("%d names defined, %d read; want %d", len(d.ids), len(names.defs), maxNameID)
	}
}

// FuzzDecodeBatch checks that no input makes the decoder panic, and that
// whatever decodes encodes back to the same frames.
func FuzzDecodeBatch(f *testing.F) {
	for _, fr := range sampleFrames() {
		f.Add(appendFrame(nil, &fr))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	// The one-way flag where it does not belong, and with a large value.
	f.Add(appendFrame(nil, &frame{typ: frameCancel, id: 3, oneWay: oneWaySent}))
	f.Add(protowire.AppendBytes(nil, []byte{byte(fieldType << 3), byte(frameRequest), 0x80, 0x01, 0xff, 0x01}))
	// Frames of a stream with a name dictionary: definitions, then ids.
	var d nameDict
	d.on = true
	var withIDs []byte
	for range 2 {
		for _, fr := range sampleFrames() {
			fr.refs = d.refs(&fr)
			withIDs = appendFrame(withIDs, &fr)
		}
	}
	f.Add(withIDs)
	f.Fuzz(func(t *testing.T, batch []byte) {
		var frames []frame
		if err := decodeBatchNames(batch, &nameTable{}, func(fr *frame) { frames = append(frames, *fr) }); err != nil {
			if !errors.Is(err, ErrCorruptFrame) {
				t.Fatalf("error %v does not wrap ErrCorruptFrame", err)
			}
			return
		}
		var again []byte
		for i := range frames {
			again = appendFrame(again, &frames[i])
		}
		var round []frame
		if err := decodeBatchNames(again, &nameTable{}, func(fr *frame) { round = append(round, *fr) }); err != nil {
			t.Fatalf("re-encoded frames do not decode: %v", err)
		}
		if len(round) != len(frames) {
			t.Fatalf("%d frames, %d after a round trip", len(frames), len(round))
		}
		for i := range round {
			a, b := round[i], frames[i]
			if len(a.payload) == 0 && len(b.payload) == 0 {
				a.payload, b.payload = nil, nil
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("frame %d: %+v after a round trip, was %+v", i, a, b)
			}
		}
	})
}

// rawStream opens a transport stream to n without the Node machinery, to
// send it whatever bytes a test wants.
func rawStream(t *testing.T, n *Node) grpc.ClientStream {
	t.Helper()
	cc, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	s, err := cc.NewStream(ctx, &transportDesc().Streams[0], streamMethod)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sendBatches sends each of batches on s as one gRPC message.
func sendBatches(t *testing.T, s grpc.ClientStream, batches ...[]byte) {
	t.Helper()
	for _, b := range batches {
		if err := s.SendMsg(&b); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
}

// garbageBatch returns bytes that do not decode as a frame.
func garbageBatch() []byte { return []byte{0x05, 0xde, 0xad, 0xbe, 0xef, 0x00} }

func TestCorruptFrameResetsOnlyItsStream(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	target := nodes[1]
	id := identityOwnedBy(t, nodes, target)
	add(t, nodes[0], id, 1) // nodes[0] now has a stream to target
	hello := appendFrame(nil, &frame{typ: frameHello, node: "intruder"})
	request := appendFrame(nil, &frame{typ: frameRequest, id: 1, kind: echoKind, identity: id, method: methodAdd})
	garbage := garbageBatch()

	for _, tc := range []struct {
		name    string
		batches [][]byte
	}{
		{"garbage first", [][]byte{garbage}},
		{"no hello", [][]byte{request}},
		{"garbage after hello", [][]byte{hello, garbage}},
		{"garbage after a valid request", [][]byte{hello, append(append([]byte(nil), request...), garbage...)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := rawStream(t, target)
			sendBatches(t, s, tc.batches...)
			var err error
			for err == nil { // replies to valid requests may come first
				var reply []byte
				err = s.RecvMsg(&reply)
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("stream ended with %v, want InvalidArgument", err)
			}
			if s, _ := status.FromError(err); !bytes.Contains([]byte(s.Message()), []byte("corrupt frame")) {
				t.Errorf("message %q does not say the frame was corrupt", s.Message())
			}
		})
	}
	// The node and its other streams keep working.
	if got := add(t, nodes[0], id, 1); got < 2 {
		t.Fatalf("total = %d after the corrupt streams, want at least 2", got)
	}
}

func TestBatchingUnderLoad(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 2, 0, nil)
	for _, h := range hs {
		h.releaseHeld()
	}
	remote := identityOwnedBy(t, nodes, nodes[1])
	add(t, nodes[0], remote, 0)
	// Many concurrent calls: with one writer per stream, frames queued
	// while it sends go out together.
	const calls = 500
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			_, err := nodes[0].Invoke(context.Background(), addCall(remote+"-"+string(rune('a'+i%26)), 1))
			errs <- err
		}()
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	frames, batches := nodes[0].transport.stats()
	t.Logf("%d frames in %d gRPC messages", frames, batches)
	if frames <= batches {
		t.Errorf("%d frames in %d messages: no batching", frames, batches)
	}
}

func TestNodeAnswersRequestsItCannotServe(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	target := nodes[1]
	notOwned := identityOwnedBy(t, nodes, nodes[0])
	owned := identityOwnedBy(t, nodes, target)
	for _, tc := range []struct {
		name   string
		req    frame
		code   codes.Code
		reason reason
	}{
		{"not the owner", frame{kind: echoKind, identity: notOwned, method: methodAdd}, codes.Unavailable, reasonNotOwner},
		// A kind no member hosts in the target's view: the sender's view,
		// which placed it there, is not the target's. It places it again.
		{"unknown kind", frame{kind: "test.Nope", identity: owned, method: methodAdd}, codes.Unavailable, reasonNotOwner},
		// Only the owner says that a method is unknown.
		{"unknown method", frame{kind: echoKind, identity: owned, method: "/test.Echo/Nope"}, codes.Unimplemented, reasonUnknownMethod},
		{"unknown method, not the owner", frame{kind: echoKind, identity: notOwned, method: "/test.Echo/Nope"}, codes.Unavailable, reasonNotOwner},
		{"undecodable payload", frame{kind: echoKind, identity: owned, method: methodAdd, payload: []byte{0x08}}, codes.InvalidArgument, reasonBadRequest},
		{"served", frame{kind: echoKind, identity: owned, method: methodAdd, payload: []byte{0x08, 0x02}}, codes.OK, reasonNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := rawStream(t, target)
			hello := appendFrame(nil, &frame{typ: frameHello, node: "raw-" + tc.name})
			tc.req.typ, tc.req.id = frameRequest, 42
			sendBatches(t, s, hello, appendFrame(nil, &tc.req))
			var batch []byte
			if err := s.RecvMsg(&batch); err != nil {
				t.Fatal(err)
			}
			var reply frame
			if err := decodeBatch(batch, func(f *frame) { reply = *f }); err != nil {
				t.Fatal(err)
			}
			if reply.typ != frameResponse || reply.id != 42 || reply.code != tc.code || reply.reason != tc.reason {
				t.Fatalf("reply %+v, want a response to 42 with code %v and reason %d", reply, tc.code, tc.reason)
			}
		})
	}
}

func TestNameTableInternsBounded(t *testing.T) {
	var nt nameTable
	a := nt.intern([]byte("kind.v1.Counter"))
	b := nt.intern([]byte("kind.v1.Counter"))
	if a != "kind.v1.Counter" || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatal("a repeated name was not interned")
	}
	known := []byte("kind.v1.Counter")
	if allocs := testing.AllocsPerRun(100, func() { nt.intern(known) }); allocs != 0 {
		t.Fatalf("interning a known name allocates %v times", allocs)
	}
	for i := range 2 * maxNames {
		nt.intern([]byte(fmt.Sprint("name-", i)))
	}
	if len(nt.m) > maxNames {
		t.Fatalf("table holds %d names, over maxNames", len(nt.m))
	}
	if got := nt.intern([]byte("unseen-after-full")); got != "unseen-after-full" {
		t.Fatalf("a name past the bound decoded as %q", got)
	}
	var none *nameTable
	if got := none.intern([]byte("x")); got != "x" {
		t.Fatalf("nil table: %q", got)
	}
}

// TestStreamsUseNameIDs checks that two nodes agree on name ids in their
// hellos: after calls both ways, each end has defined the names it sent,
// and its peer has read them.
func TestStreamsUseNameIDs(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 2, 0, nil)
	for _, h := range hs {
		h.releaseHeld()
	}
	for i := range 3 {
		add(t, nodes[0], identityOwnedBy(t, nodes, nodes[1]), int64(i))
		add(t, nodes[1], identityOwnedBy(t, nodes, nodes[0]), int64(i))
	}
	for _, n := range nodes {
		n.transport.mu.Lock()
		conns := make([]*conn, 0, len(n.transport.conns))
		for c := range n.transport.conns {
			conns = append(conns, c)
		}
		n.transport.mu.Unlock()
		for _, c := range conns {
			c.mu.Lock()
			on, defined := c.dict.on, len(c.dict.ids)
			c.mu.Unlock()
			if !on {
				t.Errorf("%s: the stream to %s does not use name ids", n.name, c.peer)
			}
			// A request defines its kind, method and client ID; replies
			// have no names. Whether this end sent requests depends on
			// which stream the calls took, so only a bound is checked.
			if defined > 3 {
				t.Errorf("%s: the stream to %s defined %d names, want at most 3", n.name, c.peer, defined)
			}
		}
	}
}

// TestFrameSize keeps a frame at 192 bytes, and what a served request
// allocates, its context, in the 64-byte size class (see servedCall).
func TestFrameSize(t *testing.T) {
	if got := unsafe.Sizeof(frame{}); got > 192 {
		t.Errorf("a frame is %d bytes, want at most 192", got)
	}
	if got := unsafe.Sizeof(servedCtx{}); got > 64 {
		t.Errorf("a servedCtx is %d bytes, want at most 64", got)
	}
}

// TestBatchedRequestsDoNotWaitForABlockedGrain sends four requests in one
// gRPC message, the first two to grains that block until the test lets
// them go. The requests of one message run in turn on one goroutine (see
// servedBatch), which brings in another when they wait: the two behind
// the blocked ones must still be answered, and only then does the test
// release the first two.
func TestBatchedRequestsDoNotWaitForABlockedGrain(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 2, 0, nil)
	target := nodes[1]
	h := hs[target.Name()]
	ids := make([]string, 4)
	for i := range ids {
		ids[i] = ownedInEveryView(t, nodes, target, echoKind, fmt.Sprint("batched-", i))
	}
	request := func(id uint64, method, identity, value string) frame {
		payload, err := proto.Marshal(wrapperspb.String(value))
		if err != nil {
			t.Fatal(err)
		}
		return frame{typ: frameRequest, id: id, kind: echoKind, identity: identity, method: method, payload: payload}
	}
	reqs := []frame{
		request(1, methodBlock, ids[0], ""),
		request(2, methodBlock, ids[1], ""),
		request(3, methodString, ids[2], "third"),
		request(4, methodString, ids[3], "fourth"),
	}
	var batch []byte
	for i := range reqs {
		batch = appendFrame(batch, &reqs[i])
	}
	s := rawStream(t, target)
	sendBatches(t, s, appendFrame(nil, &frame{typ: frameHello, node: "batcher"}), batch)
	receive(t, h.entered, "the first request to reach its grain")
	receive(t, h.entered, "the second request to reach its grain")

	replies := recvReplies(t, s, 3, 4)
	for id, want := range map[uint64]string{3: "third", 4: "fourth"} {
		var got wrapperspb.StringValue
		if err := proto.Unmarshal(replies[id].payload, &got); err != nil || got.GetValue() != want {
			t.Errorf("reply %d: %q (%v), want %q", id, got.GetValue(), err, want)
		}
	}
	h.releaseHeld()
	for id, r := range recvReplies(t, s, 1, 2) {
		if r.code != codes.OK {
			t.Errorf("released request %d failed: %v %s", id, r.code, r.message)
		}
	}
}

// TestRequestBeforeACorruptFrameStillEnds sends a request and a corrupt
// frame in one gRPC message. The stream is reset; the request, decoded
// before the corrupt frame, is still served (its grain skips it, or sees
// its context end, as the stream is gone), so it gives back its entry in
// the node's gate and Shutdown does not wait for it.
func TestRequestBeforeACorruptFrameStillEnds(t *testing.T) {
	t.Parallel()
	g := newBlockingStream(t)
	sendBatches(t, g.s, append(g.block, garbageBatch()...))
	var b []byte
	if err := g.s.RecvMsg(&b); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("the stream with a corrupt frame ended with %v, want InvalidArgument", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := g.target.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown after the reset stream: %v", err)
	}
}

// recvReplies reads s until it has a response frame for each of ids.
func recvReplies(t *testing.T, s grpc.ClientStream, ids ...uint64) map[uint64]frame {
	t.Helper()
	got := make(map[uint64]frame)
	for len(got) < len(ids) {
		var b []byte
		if err := s.RecvMsg(&b); err != nil {
			t.Fatalf("receive: %v (have replies to %d of %v)", err, len(got), ids)
		}
		err := decodeBatch(b, func(f *frame) {
			if f.typ == frameResponse && slices.Contains(ids, f.id) {
				got[f.id] = *f
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// blockingStream is a raw transport stream from a test to a node of a
// two-node cluster, past its hello frame, with a Block request to a grain
// that node owns, encoded and not yet sent.
type blockingStream struct {
	target, caller *Node // the node the stream goes to, and the other one
	h              *hooks
	id             string // the grain the request is for
	s              grpc.ClientStream
	block          []byte
}

func newBlockingStream(t *testing.T) blockingStream {
	t.Helper()
	nodes, hs := echoCluster(t, 2, 0, nil)
	g := blockingStream{target: nodes[1], caller: nodes[0], h: hs[nodes[1].Name()]}
	g.id = identityOwnedBy(t, nodes, g.target)
	g.s = rawStream(t, g.target)
	sendBatches(t, g.s, appendFrame(nil, &frame{typ: frameHello, node: "intruder"}))
	g.block = appendFrame(nil, &frame{typ: frameRequest, id: 1, kind: echoKind, identity: g.id, method: methodBlock})
	return g
}

// TestClosedStreamEndsItsServedRequests feeds a corrupt frame to a stream
// while a request that came on it is running: the stream is reset, and the
// grain sees its context end instead of running on for a caller that is
// gone. The node goes on serving other streams.
func TestClosedStreamEndsItsServedRequests(t *testing.T) {
	t.Parallel()
	g := newBlockingStream(t)
	sendBatches(t, g.s, g.block)
	receive(t, g.h.entered, "the request to reach the grain")
	sendBatches(t, g.s, garbageBatch())
	if err := receive(t, g.h.canceled, "the grain to see its stream end"); !errors.Is(err, context.Canceled) {
		t.Errorf("the grain saw %v, want context.Canceled", err)
	}
	if got := add(t, g.caller, g.id, 1); got != 1 {
		t.Fatalf("total = %d after the reset stream, want 1", got)
	}
}

// TestRawCodecKeepsUnpooledSlices checks how a received message becomes a
// batch: gRPC's own small slice is kept as it is, cut to the message so
// that the reader never pools it; a message in pooled or several buffers
// is copied, since gRPC frees those.
func TestRawCodecKeepsUnpooledSlices(t *testing.T) {
	var pool batchPool
	pool.init()
	c := rawCodec{pool: &pool}

	frameBuf := []byte("first message|the next one")
	msg := frameBuf[:13:len(frameBuf)] // as gRPC splits a data frame that holds two messages
	var got []byte
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, &got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "first message" || unsafe.SliceData(got) != unsafe.SliceData(msg) {
		t.Fatalf("an unpooled slice was copied: %q", got)
	}
	if cap(got) != len(got) {
		t.Fatalf("kept slice has capacity %d past its %d bytes: the reader could pool the next message's bytes", cap(got), len(got))
	}

	// A message in a pooled buffer is freed after Unmarshal: copied.
	owned := bytes.Repeat([]byte{7}, 2*smallBatch)
	src := &owned
	gp := mem.NewTieredBufferPool(4 * smallBatch)
	pooled := mem.NewBuffer(src, gp)
	if err := c.Unmarshal(mem.BufferSlice{pooled}, &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, owned) || unsafe.SliceData(got) == unsafe.SliceData(owned) {
		t.Fatal("a message in a pooled buffer was not copied")
	}

	// A message in two slices is copied into one.
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer("ab"), mem.SliceBuffer("cd")}, &got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "abcd" {
		t.Fatalf("two slices decoded as %q", got)
	}
	if err := c.Unmarshal(mem.BufferSlice{}, new(string)); err == nil {
		t.Fatal("unmarshal into a string: no error")
	}
}

// TestReaderSharesHeldIdentities decodes requests to a node's active
// grains, their kind and method as name ids (resolved only at the end of
// each frame), and checks that each frame's identity is the string its
// activation holds, so that decoding them allocates nothing, while an
// identity with no activation, or of a kind the node does not host, still
// decodes to its own string.
func TestReaderSharesHeldIdentities(t *testing.T) {
	nodes, _ := echoCluster(t, 1, time.Hour, nil)
	n := nodes[0]
	active := []string{"held-a", "held-b"}
	for _, id := range active {
		add(t, n, id, 1)
	}
	var d nameDict
	d.on = true
	encode := func(reqs ...frame) []byte {
		var batch []byte
		for i := range reqs {
			reqs[i].refs = d.refs(&reqs[i])
			batch = appendFrame(batch, &reqs[i])
		}
		return batch
	}
	req := func(kind, identity string) frame {
		return frame{typ: frameRequest, id: 1, kind: kind, identity: identity, method: methodAdd, payload: []byte{8, 1}}
	}
	if c := newConn(n.transport, "peer", "", nil, func() {}, nil); c.names.held != identityHolder(n) {
		t.Fatalf("a conn's reader looks identities up in %v, not in its node", c.names.held)
	}
	names := nameTable{held: n}
	var got []frame
	collect := func(f *frame) { got = append(got, *f) }
	// The first batch defines the names; "cold" has no activation and
	// "other.Kind" no hosted kind.
	first := encode(req(echoKind, "held-a"), req(echoKind, "cold"), req("other.Kind", "held-b"), req(echoKind, "held-a"))
	if err := decodeBatchNames(first, &names, collect); err != nil {
		t.Fatal(err)
	}
	want := []string{"held-a", "cold", "held-b", "held-a"}
	if len(got) != len(want) {
		t.Fatalf("decoded %d frames, want %d", len(got), len(want))
	}
	for i, f := range got {
		if f.identity != want[i] {
			t.Fatalf("frame %d: identity %q, want %q", i, f.identity, want[i])
		}
	}
	held := func(f frame) bool {
		a := n.acts.peek(actKey{kind: echoKind, identity: f.identity})
		return a != nil && unsafe.StringData(a.identity) == unsafe.StringData(f.identity)
	}
	if !held(got[0]) || !held(got[3]) {
		t.Fatalf("requests to active grains do not share their activations' identities")
	}
	if held(got[2]) {
		t.Fatalf("a request to another kind shares the identity of an activation of %s", echoKind)
	}

	// Alternating grains, so that no frame repeats the previous identity.
	again := encode(req(echoKind, "held-a"), req(echoKind, "held-b"), req(echoKind, "held-a"), req(echoKind, "held-b"))
	got = got[:0]
	if err := decodeBatchNames(again, &names, collect); err != nil {
		t.Fatal(err)
	}
	for i, f := range got {
		if f.identity != active[i%2] || !held(f) {
			t.Fatalf("frame %d: identity %q, not %s's activation's", i, f.identity, active[i%2])
		}
	}
	var f frame
	allocs := testing.AllocsPerRun(100, func() {
		if err := decodeBatchInto(again, &f, &names, func(*frame) {}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("decoding four requests to active grains allocated %v times, want 0", allocs)
	}
}

// metadataOf returns the encoding of the metadata kv, as WithMetadata
// makes it.
func metadataOf(kv ...string) string {
	var cc callConfig
	return WithMetadata(kv...).applyCall(cc).metadata.enc
}

// requestWithMetadata returns a batch of one request frame whose metadata
// is enc.
func requestWithMetadata(enc string) []byte {
	return appendFrame(nil, &frame{typ: frameRequest, id: 1, kind: "k", method: "/k/M", message: enc})
}

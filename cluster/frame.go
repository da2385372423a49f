package cluster

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
)

// frameType says what a frame carries. The values are part of the wire
// format: never renumber them.
type frameType uint8

const (
	frameHello    frameType = 1 // first frame of a dialed stream: who is calling
	frameRequest  frameType = 2 // a call to a grain
	frameResponse frameType = 3 // the reply to the request with the same id
	frameCancel   frameType = 4 // the caller gave up on the request with the same id
)

// frame is one message between two nodes. A gRPC message on the stream is a
// batch: frames one after the other, each preceded by its length as a
// varint. A frame is encoded like a protobuf message with the field numbers
// below, so unknown fields from newer peers are skipped.
//
// The small fields come first and together, so that the struct has no
// padding between them: a frame is 192 bytes.
type frame struct {
	typ      frameType
	reason   reason
	oneWay   oneWayMark // whether a request gets no reply (see fieldOneWay)
	hello    helloFlags // what a hello frame says besides the sender's name
	code     codes.Code // a reply's status; in a cancel frame, why (see fieldCode)
	id       uint64
	kind     string
	identity string // a request's grain; in a hello frame, an incarnation (see fieldIdentity)
	method   string // a request's method; in a hello frame, the incarnation the sender replaced (see fieldMethod)
	payload  []byte
	timeout  time.Duration // time left until the caller's deadline; 0 = none
	message  string        // a reply's error; in a hello frame, the sender's transport address; in a request, its metadata (see fieldMessage)
	node     string        // the sender's name, in a hello frame
	chain    []actKey      // a request's callers, outermost first
	stamp    stamp         // a request's exactly-once stamp
	// refs says how kind, method and stamp.client go on the wire of a
	// stream with a name dictionary: set by the sending conn, and by the
	// decoder, which then resolves them into the strings.
	refs nameRefs
}

// nameRefs are the ids of a frame's names in its stream's name dictionary.
//
// The trick: the kind, method and client ID of the frames on a stream are
// a few names repeated in every frame, 20 to 50 bytes each. The first frame
// that carries a name sends it with a new id (a definition); the frames
// after it send only the id, a one-byte varint, and the reader looks it up
// in a slice instead of hashing the string into its intern table. Each
// direction of a stream has its own dictionary, filled in frame order: ids
// are 1, 2, 3... in the order the writer defined them, so a definition out
// of order, or an id that was never defined, is a corrupt frame. A stream
// uses ids only once the peer said in its hello frame that it understands
// them (fieldNames), so an older peer gets strings.
type nameRefs struct {
	kind, method, client nameRef
}

// nameRef is one name's id; 0 means none (the name goes as a string).
type nameRef struct {
	id     uint16 // at most maxNameID
	define bool   // the string goes too, and binds id to it
}

// maxNameID bounds a stream's dictionary: names past it go as strings.
const maxNameID = 1024

// Field numbers of a frame.
const (
	fieldType protowire.Number = 1
	fieldID   protowire.Number = 2
	fieldKind protowire.Number = 3
	// fieldIdentity is a request's grain identity. In a hello frame it
	// is an incarnation (see retiredIncarnations): in a dialer's first
	// hello, the dialer's own; in the acceptor's answer to it (a hello
	// with fieldNames), the acceptor's (see answerIn); in a hello
	// with fieldSuperseded, the receiver's; in one with fieldAskRelease
	// or fieldReleased, the sender's. An older peer reads none.
	fieldIdentity protowire.Number = 4
	// fieldMethod is a request's method. In a dialer's first hello it is
	// the incarnation the dialer's start replaced under its name, if it
	// saw one (see conn.replaced); an older peer reads neither.
	fieldMethod protowire.Number = 5
	// fieldPayload is a request's or reply's message. In a dialer's first
	// hello and in the acceptor's answer to it, the sender's
	// Config.ClusterName (see transport.answeredBy and serveStream); an
	// older peer sends none, which reads as no name, and ignores it.
	fieldPayload protowire.Number = 6
	fieldTimeout protowire.Number = 7
	// fieldCode is a reply's status code. In a cancel frame it says why
	// the caller gave up: codes.DeadlineExceeded when its deadline passed,
	// so that the request's context ends with context.DeadlineExceeded
	// there too (see servedCtx.expire); none when it cancelled. A peer
	// from before it decodes the field (any frame may carry a code) and
	// ignores it, and a cancel frame it sends has none: a cancellation.
	fieldCode protowire.Number = 8
	// fieldMessage is a reply's error message. In a hello frame it is the
	// sender's transport address, which tells two incarnations of one
	// node name apart (see conn.addr); in one with fieldAskRelease or
	// fieldReleased, the receiver's incarnation, as the sender knows it.
	// An older peer reads none. In a request frame it is the request's
	// metadata, encoded (see Metadata); an older peer ignores it there, as
	// a request had no message.
	fieldMessage protowire.Number = 9
	fieldReason  protowire.Number = 10
	fieldNode    protowire.Number = 11
	// A request's chain of callers: each caller is a chainKind field
	// followed by a chainIdentity field.
	fieldChainKind     protowire.Number = 12
	fieldChainIdentity protowire.Number = 13
	// A request's stamp: the client ID and its sequence number.
	fieldClientID protowire.Number = 14
	fieldSeq      protowire.Number = 15
	// fieldOneWay marks a request as a one-way message: no reply frame
	// follows, and its id is 0. It is a flag on a request rather than a
	// frame type of its own so that an older peer, which skips the unknown
	// field, runs it as a call instead of resetting the stream; the reply it
	// sends carries id 0, which matches no call and is dropped. Its value
	// is a oneWayMark.
	fieldOneWay protowire.Number = 16
	// fieldNames, in a hello frame, says that its sender understands the
	// name ids below (see nameRefs). The acceptor of a stream answers a
	// hello that has it with a hello of its own that has it.
	fieldNames protowire.Number = 17
	// The ids of kind, method and stamp.client in the stream's name
	// dictionary (see nameRefs): with the string field, a definition;
	// alone, a reference.
	fieldKindRef   protowire.Number = 18
	fieldMethodRef protowire.Number = 19
	fieldClientRef protowire.Number = 20
	// fieldBye, in a hello frame, says that its sender sends no more
	// requests on the stream (see conn.bye). It rides on a hello frame, not
	// a frame type of its own, because an older peer reads any hello after
	// the first as nothing at all, where it would reset the stream on an
	// unknown type.
	fieldBye protowire.Number = 21
	// fieldLeaving, in a hello frame, says that its sender is leaving the
	// cluster gracefully, perhaps before the gossip says so (see
	// conn.peerLeaving). A hello, for the reason fieldBye is.
	fieldLeaving protowire.Number = 22
	// fieldSuperseded, in a hello frame, tells the receiver that a later
	// start under its name replaced it: the sender's view replaced the
	// incarnation in fieldIdentity with another (see
	// retiredIncarnations). An acceptor answers such a dialer's first
	// hello with it, and a member that sees such a start's gossip dials
	// it to send it. A hello, for the reason fieldBye is.
	fieldSuperseded protowire.Number = 23
	// fieldReleased, in a hello frame, answers fieldAskRelease: its sender
	// holds no FlushManual grain that its view places on another member
	// (those the receiver may have taken from it among them), and
	// committed what they had buffered. With fieldLeaving too, it holds no
	// grain at all: it is leaving, and has deactivated them all. The hello's
	// fieldIdentity is the sender's incarnation, its fieldMessage the
	// receiver's that asked.
	fieldReleased protowire.Number = 24
	// fieldAskRelease, in a hello frame, asks the receiver to say when it
	// has released the grains its sender took from it (see handoffs): the
	// receiver answers with fieldReleased once it holds none of them. The
	// hello's fieldIdentity is the sender's incarnation, its fieldMessage
	// the receiver's that the sender's view has. A hello, for the reason
	// fieldBye is; an older peer skips the field, and is not asked.
	fieldAskRelease protowire.Number = 25
)

// helloFlags are what a hello frame says about its sender, each in a
// field of its own on the wire.
type helloFlags uint8

const (
	helloNames      helloFlags = 1 << iota // the sender understands name ids (fieldNames)
	helloBye                               // the sender sends no more requests on the stream (fieldBye)
	helloLeaving                           // the sender is leaving the cluster (fieldLeaving)
	helloSuperseded                        // the receiver was replaced by a later start under its name (fieldSuperseded)
	helloAskRelease                        // the sender asks when the receiver released its grains (fieldAskRelease)
	helloReleased                          // the sender released the grains the receiver took from it (fieldReleased)
	helloLast       = helloReleased
)

// helloField returns the field that carries flag on the wire.
func helloField(flag helloFlags) protowire.Number {
	switch flag {
	case helloNames:
		return fieldNames
	case helloBye:
		return fieldBye
	case helloLeaving:
		return fieldLeaving
	case helloAskRelease:
		return fieldAskRelease
	case helloReleased:
		return fieldReleased
	default:
		return fieldSuperseded
	}
}

// oneWayMark is what fieldOneWay says about a request: nothing (a call), a
// one-way message, or a one-way message that a node forwarded because it
// did not own the grain (see Node.forwardOneWay), once or, then by nodes
// that were leaving or whose view was ahead of the forwarder's, twice or
// three times. Any value past
// oneWayForwardedThrice decodes as it; an older peer reads any value but
// zero as a one-way message, as for a proto bool, a peer from before the
// second hop reads 3 and 4 as forwarded, and one from before the third
// reads 4 as forwarded twice: the last hop, for it.
type oneWayMark uint8

const (
	twoWay                oneWayMark = iota // a call: a reply follows
	oneWaySent                              // a one-way message, from the node that placed it
	oneWayForwarded                         // a one-way message, forwarded once already
	oneWayForwardedTwice                    // a one-way message, forwarded twice
	oneWayForwardedThrice                   // a one-way message, forwarded three times: the last hop
)

// maxCode is the highest gRPC code a frame may carry.
const maxCode = codes.Unauthenticated

// appendFrame appends f, length-prefixed, to a batch.
//
// The trick: one pass over the fields. The length prefix is the varint of
// the frame's size, which is known only once the frame is written. A frame
// with little variable content (a call, a reply, a one-way message: tens
// of bytes) is written after room for a one-byte prefix, and one of 128
// bytes or more is then moved up by the bytes its longer prefix needs. A
// frame with more than smallFrameContent bytes of payload, identity and
// message is sized first (f.size), so that its payload is written once.
// Sizing every frame first walked all its fields twice: f.size and its
// adjustment for name ids were 4.6% of the CPU of the host of bench/grains
// OneWay.
func appendFrame(b []byte, f *frame) []byte {
	if len(f.payload)+len(f.identity)+len(f.message) > smallFrameContent {
		b = protowire.AppendVarint(b, uint64(f.size()))
		return appendFrameFields(b, f)
	}
	start := len(b)
	b = appendFrameFields(append(b, 0), f)
	n := len(b) - start - 1
	if n < 0x80 {
		b[start] = byte(n)
		return b
	}
	extra := protowire.SizeVarint(uint64(n)) - 1
	b = append(b, make([]byte, extra)...)
	copy(b[start+1+extra:], b[start+1:start+1+n])
	protowire.AppendVarint(b[start:start], uint64(n))
	return b
}

// smallFrameContent is the most bytes of payload, identity and message a
// frame may have for appendFrame to write it before knowing its size: a
// frame that turns out to take more than a one-byte length prefix is
// moved, which costs little next to encoding it at this size.
const smallFrameContent = 256

// appendFrameFields appends f's fields, without the length prefix.
func appendFrameFields(b []byte, f *frame) []byte {
	b = appendVarintField(b, fieldType, uint64(f.typ))
	b = appendVarintField(b, fieldID, f.id)
	b = appendNameField(b, fieldKind, fieldKindRef, f.kind, f.refs.kind)
	b = appendStringField(b, fieldIdentity, f.identity)
	b = appendNameField(b, fieldMethod, fieldMethodRef, f.method, f.refs.method)
	if len(f.payload) > 0 {
		b = appendLength(appendTag(b, fieldPayload, protowire.BytesType), len(f.payload))
		b = append(b, f.payload...)
	}
	b = appendVarintField(b, fieldTimeout, uint64(f.timeout))
	b = appendVarintField(b, fieldCode, uint64(f.code))
	b = appendStringField(b, fieldMessage, f.message)
	b = appendVarintField(b, fieldReason, uint64(f.reason))
	b = appendStringField(b, fieldNode, f.node)
	for _, k := range f.chain {
		// Both always, even empty, so that each caller stays a pair.
		b = appendLength(appendTag(b, fieldChainKind, protowire.BytesType), len(k.kind))
		b = append(b, k.kind...)
		b = appendLength(appendTag(b, fieldChainIdentity, protowire.BytesType), len(k.identity))
		b = append(b, k.identity...)
	}
	b = appendNameField(b, fieldClientID, fieldClientRef, f.stamp.client, f.refs.client)
	b = appendVarintField(b, fieldSeq, f.stamp.seq)
	if f.oneWay != twoWay {
		b = appendVarintField(b, fieldOneWay, uint64(f.oneWay))
	}
	for flag := helloFlags(1); f.hello != 0 && flag <= helloLast; flag <<= 1 {
		if f.hello&flag != 0 {
			b = appendVarintField(b, helloField(flag), 1)
		}
	}
	return b
}

// size returns the encoded size of f without its length prefix.
func (f *frame) size() int {
	n := varintFieldSize(fieldType, uint64(f.typ)) + varintFieldSize(fieldID, f.id) +
		nameFieldSize(fieldKind, fieldKindRef, f.kind, f.refs.kind) + stringFieldSize(fieldIdentity, f.identity) +
		nameFieldSize(fieldMethod, fieldMethodRef, f.method, f.refs.method) +
		varintFieldSize(fieldTimeout, uint64(f.timeout)) + varintFieldSize(fieldCode, uint64(f.code)) +
		stringFieldSize(fieldMessage, f.message) + varintFieldSize(fieldReason, uint64(f.reason)) +
		stringFieldSize(fieldNode, f.node) +
		nameFieldSize(fieldClientID, fieldClientRef, f.stamp.client, f.refs.client) + varintFieldSize(fieldSeq, f.stamp.seq)
	if f.oneWay != twoWay {
		n += varintFieldSize(fieldOneWay, uint64(f.oneWay))
	}
	for flag := helloFlags(1); f.hello != 0 && flag <= helloLast; flag <<= 1 {
		if f.hello&flag != 0 {
			n += varintFieldSize(helloField(flag), 1)
		}
	}
	if len(f.payload) > 0 {
		n += protowire.SizeTag(fieldPayload) + protowire.SizeBytes(len(f.payload))
	}
	for _, k := range f.chain {
		n += protowire.SizeTag(fieldChainKind) + protowire.SizeBytes(len(k.kind)) +
			protowire.SizeTag(fieldChainIdentity) + protowire.SizeBytes(len(k.identity))
	}
	return n
}

// sizeBound returns at least the number of bytes appendFrame appends for f,
// whatever ids its names get: a conn checks its limits with it before it
// knows them. It only adds lengths: the fields' tags, varints and length
// prefixes count at their largest.
func (f *frame) sizeBound() int {
	n := frameBoundFixed + len(f.kind) + len(f.identity) + len(f.method) + len(f.payload) +
		len(f.message) + len(f.node) + len(f.stamp.client)
	for _, k := range f.chain {
		n += 2*(maxTagSize+binary.MaxVarintLen64) + len(k.kind) + len(k.identity)
	}
	return n
}

// maxTagSize is the largest tag of a frame's fields (numbered below 2048).
const maxTagSize = 2

// frameBoundFixed is what sizeBound counts for a frame besides the bytes
// of its strings and payload: the length prefix, and every field at its
// largest, the three names both as strings and ids, the chain aside.
const frameBoundFixed = binary.MaxVarintLen64 + // the length prefix
	13*(maxTagSize+binary.MaxVarintLen64) + // type, id, timeout, code, reason, seq, one-way, names, bye, leaving, superseded, ask release, released
	7*(maxTagSize+binary.MaxVarintLen64) + // kind, identity, method, payload, message, node, client ID
	3*(maxTagSize+binary.MaxVarintLen64) // the ids of kind, method and client ID

// The field helpers below leave zero values out, as in proto3. They write
// one-byte tags and varints inline: protowire's AppendTag and AppendVarint
// are calls that handle every size, and the fields of a frame are mostly
// small numbers with small field numbers.

// appendTag appends the tag of field num, of wire type typ. num must be
// below 2048: its tag then takes at most maxTagSize bytes.
func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	t := uint64(num)<<3 | uint64(typ)
	if t < 0x80 {
		return append(b, byte(t))
	}
	return append(b, byte(t)|0x80, byte(t>>7))
}

// appendLength appends n as a varint, as the length of a bytes field.
func appendLength(b []byte, n int) []byte {
	if n < 0x80 {
		return append(b, byte(n))
	}
	return protowire.AppendVarint(b, uint64(n))
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = appendTag(b, num, protowire.VarintType)
	if v < 0x80 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = appendLength(appendTag(b, num, protowire.BytesType), len(s))
	return append(b, s...)
}

// appendNameField appends name s as its string field, its ref field, or
// both (a definition), as r says.
func appendNameField(b []byte, str, ref protowire.Number, s string, r nameRef) []byte {
	if r.id == 0 || r.define {
		b = appendStringField(b, str, s)
	}
	return appendVarintField(b, ref, uint64(r.id))
}

func nameFieldSize(str, ref protowire.Number, s string, r nameRef) int {
	n := varintFieldSize(ref, uint64(r.id))
	if r.id == 0 || r.define {
		n += stringFieldSize(str, s)
	}
	return n
}

func varintFieldSize(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func stringFieldSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

// decodeBatch calls fn for each frame of a batch. It stops at the first
// frame that does not decode and returns an error wrapping ErrCorruptFrame;
// it never panics, whatever the bytes. A frame's payload aliases batch.
func decodeBatch(batch []byte, fn func(*frame)) error {
	return decodeBatchNames(batch, nil, fn)
}

// decodeBatchNames is decodeBatch that takes the names frames carry (kinds,
// methods, client IDs) from names, which may be nil.
func decodeBatchNames(batch []byte, names *nameTable, fn func(*frame)) error {
	var f frame
	return decodeBatchInto(batch, &f, names, fn)
}

// decodeBatchInto is decodeBatchNames that decodes each frame into f, which
// fn must not keep. A stream's reader passes the same f for every batch:
// a frame declared here escapes to the heap through fn, 192 bytes per
// batch (5.6% of the bytes the host of bench/grains RemoteCalls allocated).
func decodeBatchInto(batch []byte, f *frame, names *nameTable, fn func(*frame)) error {
	for len(batch) > 0 {
		n, m := protowire.ConsumeVarint(batch)
		if m < 0 {
			return fmt.Errorf("%w: bad length prefix: %v", ErrCorruptFrame, protowire.ParseError(m))
		}
		batch = batch[m:]
		if n > uint64(len(batch)) {
			return fmt.Errorf("%w: length %d exceeds the %d bytes left", ErrCorruptFrame, n, len(batch))
		}
		*f = frame{}
		if err := decodeFrame(batch[:n], f, names); err != nil {
			return err
		}
		batch = batch[n:]
		fn(f)
	}
	*f = frame{} // let the last frame's strings and payload go
	return nil
}

// decodeFrame decodes one frame (without its length prefix) into f and
// checks that it is well formed.
func decodeFrame(b []byte, f *frame, names *nameTable) error {
	if names != nil {
		names.rawIdentity = nil // not the last frame's, if that did not decode
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: bad tag: %v", ErrCorruptFrame, protowire.ParseError(n))
		}
		b = b[n:]
		n, err := decodeField(b, num, typ, f, names)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	if f.refs != (nameRefs{}) {
		if err := names.resolve(f); err != nil {
			return err
		}
	}
	if names != nil && names.rawIdentity != nil {
		f.identity = names.identity(f.kind, names.rawIdentity)
		names.rawIdentity = nil
	}
	return f.check()
}

// decodeField decodes the value of field num and returns its length.
func decodeField(b []byte, num protowire.Number, typ protowire.Type, f *frame, names *nameTable) (int, error) {
	switch num {
	case fieldType, fieldID, fieldTimeout, fieldCode, fieldReason, fieldSeq, fieldOneWay, fieldNames,
		fieldBye, fieldLeaving, fieldSuperseded, fieldAskRelease, fieldReleased, fieldKindRef, fieldMethodRef, fieldClientRef:
		if typ != protowire.VarintType {
			return 0, fmt.Errorf("%w: field %d has wire type %d, want varint", ErrCorruptFrame, num, typ)
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return 0, fmt.Errorf("%w: field %d: %v", ErrCorruptFrame, num, protowire.ParseError(n))
		}
		return n, f.setVarint(num, v)
	case fieldKind, fieldIdentity, fieldMethod, fieldPayload, fieldMessage, fieldNode, fieldChainKind, fieldChainIdentity,
		fieldClientID:
		if typ != protowire.BytesType {
			return 0, fmt.Errorf("%w: field %d has wire type %d, want bytes", ErrCorruptFrame, num, typ)
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, fmt.Errorf("%w: field %d: %v", ErrCorruptFrame, num, protowire.ParseError(n))
		}
		return n, f.setBytes(num, v, names)
	default: // a field from a newer peer
		n := protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, fmt.Errorf("%w: field %d: %v", ErrCorruptFrame, num, protowire.ParseError(n))
		}
		return n, nil
	}
}

// setHello sets or clears flag in f.hello.
func (f *frame) setHello(flag helloFlags, on bool) {
	if on {
		f.hello |= flag
	} else {
		f.hello &^= flag
	}
}

func (f *frame) setVarint(num protowire.Number, v uint64) error {
	switch num {
	case fieldType:
		if v < uint64(frameHello) || v > uint64(frameCancel) {
			return fmt.Errorf("%w: unknown frame type %d", ErrCorruptFrame, v)
		}
		f.typ = frameType(v)
	case fieldID:
		f.id = v
	case fieldTimeout:
		if v > math.MaxInt64 {
			return fmt.Errorf("%w: timeout %d out of range", ErrCorruptFrame, v)
		}
		f.timeout = time.Duration(v)
	case fieldCode:
		if v > uint64(maxCode) {
			return fmt.Errorf("%w: unknown status code %d", ErrCorruptFrame, v)
		}
		f.code = codes.Code(v)
	case fieldReason:
		// A reason this node does not know comes from a newer peer: the
		// error keeps its code and message, without a sentinel.
		if v < uint64(reasonCount) {
			f.reason = reason(v)
		}
	case fieldSeq:
		f.stamp.seq = v
	case fieldOneWay:
		f.oneWay = oneWayMark(min(v, uint64(oneWayForwardedThrice)))
	case fieldNames:
		f.setHello(helloNames, v != 0)
	case fieldBye:
		f.setHello(helloBye, v != 0)
	case fieldLeaving:
		f.setHello(helloLeaving, v != 0)
	case fieldSuperseded:
		f.setHello(helloSuperseded, v != 0)
	case fieldAskRelease:
		f.setHello(helloAskRelease, v != 0)
	case fieldReleased:
		f.setHello(helloReleased, v != 0)
	case fieldKindRef, fieldMethodRef, fieldClientRef:
		if v == 0 || v > maxNameID {
			return fmt.Errorf("%w: name id %d out of range", ErrCorruptFrame, v)
		}
		r := nameRef{id: uint16(v)}
		switch num {
		case fieldKindRef:
			f.refs.kind = r
		case fieldMethodRef:
			f.refs.method = r
		default:
			f.refs.client = r
		}
	}
	return nil
}

func (f *frame) setBytes(num protowire.Number, v []byte, names *nameTable) error {
	switch num {
	case fieldChainKind:
		f.chain = append(f.chain, actKey{kind: names.intern(v)})
	case fieldChainIdentity:
		if len(f.chain) == 0 {
			return fmt.Errorf("%w: caller identity without a caller kind", ErrCorruptFrame)
		}
		f.chain[len(f.chain)-1].identity = string(v)
	case fieldKind:
		f.kind = names.intern(v)
	case fieldIdentity:
		if names == nil {
			f.identity = string(v)
		} else {
			names.rawIdentity = v // decodeFrame resolves it once the kind is known
		}
	case fieldMethod:
		f.method = names.intern(v)
	case fieldPayload:
		f.payload = v
	case fieldMessage:
		f.message = string(v)
	case fieldNode:
		f.node = string(v)
	case fieldClientID:
		f.stamp.client = names.intern(v)
	}
	return nil
}

// check reports a frame that is missing what its type needs.
func (f *frame) check() error {
	switch f.typ {
	case 0:
		return fmt.Errorf("%w: frame has no type", ErrCorruptFrame)
	case frameHello:
		if f.node == "" {
			return fmt.Errorf("%w: hello frame without a node name", ErrCorruptFrame)
		}
	case frameRequest:
		if f.kind == "" || f.method == "" {
			return fmt.Errorf("%w: request frame %d without kind or method", ErrCorruptFrame, f.id)
		}
		if f.message != "" {
			return checkMetadata(f.message)
		}
		return nil
	}
	if f.oneWay != twoWay {
		return fmt.Errorf("%w: frame of type %d marked one-way; only requests can be", ErrCorruptFrame, f.typ)
	}
	return nil
}

// resolve binds the names f defines to their ids, and replaces the ids f
// refers to with their names, in the order the sender assigned them: kind,
// method, client.
func (t *nameTable) resolve(f *frame) error {
	if t == nil {
		return fmt.Errorf("%w: name id in a frame of a stream without a name dictionary", ErrCorruptFrame)
	}
	var err error
	f.refs.kind, err = t.resolveName(&f.kind, f.refs.kind)
	if err == nil {
		f.refs.method, err = t.resolveName(&f.method, f.refs.method)
	}
	if err == nil {
		f.refs.client, err = t.resolveName(&f.stamp.client, f.refs.client)
	}
	return err
}

func (t *nameTable) resolveName(s *string, r nameRef) (nameRef, error) {
	if r.id == 0 {
		return r, nil
	}
	if *s != "" { // a definition: the next id
		if int(r.id) != len(t.defs)+1 {
			return r, fmt.Errorf("%w: name id %d defined after %d", ErrCorruptFrame, r.id, len(t.defs))
		}
		t.defs = append(t.defs, *s)
		r.define = true
		return r, nil
	}
	if int(r.id) > len(t.defs) {
		return r, fmt.Errorf("%w: unknown name id %d", ErrCorruptFrame, r.id)
	}
	*s = t.defs[r.id-1]
	return r, nil
}

// maxNames bounds a nameTable, so that a peer sending ever new names cannot
// grow it without limit; names past it are allocated per frame.
const maxNames = 1024

// nameTable interns the names one conn decodes: grain kinds, methods and
// client IDs, which repeat from frame to frame. Looking a []byte up in a map
// with string(v) as the key does not allocate, so a name seen before costs
// a map lookup instead of a new string per frame. Only the conn's reader
// uses it; a nil table interns nothing.
type nameTable struct {
	m map[string]string
	// defs are the names the peer defined in the stream's dictionary:
	// defs[i] has id i+1 (see nameRefs).
	defs []string
	// last is the identity of the previous frame: consecutive frames to
	// one grain (a stream of one-way messages) share its string instead
	// of allocating one each. Identities are too many to intern here.
	last string
	// held, if not nil, has the identities of the node's active grains:
	// a request to one shares the string its activation holds (see
	// identity).
	held identityHolder
	// rawIdentity is the identity of the frame being decoded, until
	// decodeFrame knows the frame's kind (a name id is resolved at the end).
	rawIdentity []byte
}

// identityHolder finds the string of a grain identity that a node holds
// already.
type identityHolder interface {
	// heldIdentity returns the identity of this node's activation of
	// (kind, v), or "" if there is none.
	heldIdentity(kind string, v []byte) string
}

// identity returns v, the identity of a frame of the given kind (a
// request's; "" for other frames), as a string: the previous frame's if
// equal, else an active grain's if held knows one. A call to a grain that
// is active, as most are under load, then costs no string of its own:
// those strings were 4.8% of the bytes a node allocated serving
// bench/grains RemoteCalls with 64 callers (its heap profile).
func (t *nameTable) identity(kind string, v []byte) string {
	if string(v) == t.last { // compared without converting
		return t.last
	}
	t.last = ""
	if t.held != nil && kind != "" {
		t.last = t.held.heldIdentity(kind, v)
	}
	if t.last == "" {
		t.last = string(v)
	}
	return t.last
}

func (t *nameTable) intern(v []byte) string {
	if t == nil {
		return string(v)
	}
	if s, ok := t.m[string(v)]; ok {
		return s
	}
	s := string(v)
	if len(t.m) < maxNames {
		if t.m == nil {
			t.m = make(map[string]string)
		}
		t.m[s] = s
	}
	return s
}

package cluster

import (
	"context"
	"fmt"
	"iter"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
)

// Metadata is what a call or one-way message carries besides its request:
// pairs of keys and values that its sender attached (WithMetadata), for
// the grain and the node's interceptors to read (MetadataFrom): a trace
// context, a tenant, an authenticated principal. It reaches the grain's
// node as it was sent, on the same node or across nodes, and stays with
// the call's context only: a call the grain makes carries none unless it
// is given some (an OutgoingInterceptor may pass it on). Keys are
// case-sensitive; a key set twice has the last value. The zero Metadata
// has no pairs.
//
// A Metadata is the pairs in their wire encoding, built once by
// WithMetadata, so that a call that carries the same metadata as the last
// one costs no encoding, and a grain that never reads it no decoding.
type Metadata struct {
	enc string // each key and value in turn, each as a varint length and its bytes
}

// MaxMetadataBytes bounds the metadata of one call or one-way message, in
// its encoding: each key and value, and a byte or two of length for each.
// A call with more fails with ErrBadRequest.
const MaxMetadataBytes = 16 << 10

// metadataKey is the context key under which a grain's context carries
// the metadata of the call it serves.
type metadataKey struct{}

// MetadataFrom returns the metadata of the call or one-way message whose
// context ctx is, or derives from: what its sender attached with
// WithMetadata. It returns no pairs for any other context.
func MetadataFrom(ctx context.Context) Metadata {
	md, _ := ctx.Value(metadataKey{}).(Metadata)
	return md
}

// Get returns the value of key, and whether md has it: the last value, if
// the sender set key more than once.
func (md Metadata) Get(key string) (value string, ok bool) {
	for k, v := range md.All() {
		if k == key {
			value, ok = v, true
		}
	}
	return value, ok
}

// All returns md's pairs in the order they were attached.
func (md Metadata) All() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for rest := md.enc; rest != ""; {
			k, n := consumeString(rest)
			v, m := consumeString(rest[n:])
			if !yield(k, v) {
				return
			}
			rest = rest[n+m:]
		}
	}
}

// Len returns the number of md's pairs.
func (md Metadata) Len() int {
	n := 0
	for range md.All() {
		n++
	}
	return n
}

// consumeString reads a length-prefixed string from the front of s, which
// checkMetadata found well formed (or WithMetadata wrote), and returns it
// and the bytes it took.
func consumeString(s string) (string, int) {
	var l, shift, n int
	for {
		c := s[n]
		n++
		l |= int(c&0x7f) << shift
		if c < 0x80 {
			return s[n : n+l], n + l
		}
		shift += 7
	}
}

// WithMetadata attaches kv, pairs of keys and values, to the call or
// one-way message, after any attached by an earlier option: the grain
// reads them with MetadataFrom. Keys must be non-empty, and keys and
// values valid UTF-8; an odd number of strings, or more than
// MaxMetadataBytes in all, fails the call with ErrBadRequest. The option
// encodes kv once: build it once for metadata that many calls carry.
func WithMetadata(kv ...string) CallOption {
	if len(kv)%2 != 0 {
		return withMetadata{err: fmt.Errorf("WithMetadata takes pairs of keys and values, got %d strings", len(kv))}
	}
	var b []byte
	for i := 0; i < len(kv); i += 2 {
		k, v := kv[i], kv[i+1]
		switch {
		case k == "":
			return withMetadata{err: fmt.Errorf("metadata key %d is empty", i/2)}
		case !utf8.ValidString(k) || !utf8.ValidString(v):
			return withMetadata{err: fmt.Errorf("metadata key %q or its value is not valid UTF-8", k)}
		}
		b = protowire.AppendString(protowire.AppendString(b, k), v)
	}
	return withMetadata{md: Metadata{enc: string(b)}}
}

type withMetadata struct {
	md  Metadata
	err error
}

func (o withMetadata) applyCall(c callConfig) callConfig {
	switch {
	case o.err != nil && c.metadataErr == nil:
		c.metadataErr = o.err
	case c.metadata.enc == "":
		c.metadata = o.md
	default:
		c.metadata.enc += o.md.enc
	}
	return c
}

// checkMetadata returns an ErrBadRequest for a call to kind/identity
// method whose options gave it bad metadata, or too much of it.
func (c *callConfig) checkMetadata(call *Call) error {
	switch {
	case c.metadataErr != nil:
		return newError(codes.InvalidArgument, ErrBadRequest, "cluster: call to %s/%s %s: %v", call.Kind, call.Identity, call.Method, c.metadataErr)
	case len(c.metadata.enc) > MaxMetadataBytes:
		return newError(codes.InvalidArgument, ErrBadRequest, "cluster: call to %s/%s %s: %d bytes of metadata, more than MaxMetadataBytes (%d)",
			call.Kind, call.Identity, call.Method, len(c.metadata.enc), MaxMetadataBytes)
	}
	return nil
}

// checkMetadata reports whether enc, the metadata of a request frame
// from a peer, is well formed: pairs of length-prefixed strings, keys not
// empty, all valid UTF-8, within MaxMetadataBytes.
func checkMetadata(enc string) error {
	if len(enc) > MaxMetadataBytes {
		return fmt.Errorf("%w: %d bytes of metadata, more than MaxMetadataBytes", ErrCorruptFrame, len(enc))
	}
	b := []byte(enc)
	for key := true; len(b) > 0; key = !key {
		s, n := protowire.ConsumeBytes(b)
		switch {
		case n < 0:
			return fmt.Errorf("%w: metadata: %v", ErrCorruptFrame, protowire.ParseError(n))
		case key && len(s) == 0:
			return fmt.Errorf("%w: metadata with an empty key", ErrCorruptFrame)
		case !utf8.Valid(s):
			return fmt.Errorf("%w: metadata that is not valid UTF-8", ErrCorruptFrame)
		case key && len(b) == n:
			return fmt.Errorf("%w: metadata key without a value", ErrCorruptFrame)
		}
		b = b[n:]
	}
	return nil
}

// metadataCtx is the context of a call that carries metadata: ctx, with
// md under metadataKey. Calls without metadata go without it.
type metadataCtx struct {
	context.Context
	md Metadata
}

// withMetadataOf returns ctx carrying md, or ctx itself if md has no
// pairs.
func withMetadataOf(ctx context.Context, md Metadata) context.Context {
	if md.enc == "" {
		return ctx
	}
	return &metadataCtx{Context: ctx, md: md}
}

// AfterFunc lets contexts derived from c follow ctx with a callback when
// ctx can (see grainContext.AfterFunc).
func (c *metadataCtx) AfterFunc(f func()) func() bool { return context.AfterFunc(c.Context, f) }

// Value implements context.Context.
func (c *metadataCtx) Value(key any) any {
	if key == (metadataKey{}) {
		return c.md
	}
	return c.Context.Value(key)
}

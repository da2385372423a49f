package cluster

import "sync"

// batchPool recycles the buffers a conn queues frames in. gRPC frees a
// batch into it once the batch is written (rawCodec.Marshal wraps it in a
// mem.Buffer of this pool), and conn.enqueue takes the next batches from
// it, so a busy stream reuses a few buffers instead of allocating a new one
// per gRPC message; those were a third of the bytes a process of the
// one-way benchmark allocated, and the GC's work grows with them.
//
// Buffers come in batchTierCount sizes, tierSize(i); a request above the
// largest (a frame bigger than MaxBatchBytes) is allocated and not kept. Buffers
// are not cleared: a batch is only ever read up to what was appended.
type batchPool struct {
	tiers [batchTierCount]sync.Pool // *[]byte of capacity tierSize(i)
}

// batchTierCount is how many buffer sizes batchPool keeps.
const batchTierCount = 5

// tierSize is the capacity of the buffers of tier i: 4 KiB, 16 KiB, 64 KiB,
// 256 KiB (DefaultMaxBatchBytes) and 1 MiB. Below 4 KiB gRPC would not pool
// anyway (mem.IsBelowBufferPoolingThreshold).
func tierSize(i int) int { return 4 << 10 << (2 * i) }

// Get implements mem.BufferPool: a buffer of length n and at least that
// capacity.
func (p *batchPool) Get(n int) *[]byte {
	for i := range batchTierCount {
		size := tierSize(i)
		if n > size {
			continue
		}
		if b, ok := p.tiers[i].Get().(*[]byte); ok {
			*b = (*b)[:n]
			return b
		}
		b := make([]byte, n, size)
		return &b
	}
	b := make([]byte, n)
	return &b
}

// Put implements mem.BufferPool. A buffer whose capacity is not a tier's
// (not from Get) is left to the GC.
func (p *batchPool) Put(b *[]byte) {
	for i := range batchTierCount {
		if cap(*b) == tierSize(i) {
			p.tiers[i].Put(b)
			return
		}
	}
}

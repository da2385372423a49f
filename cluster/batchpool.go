package cluster

// batchPool recycles the buffers a conn queues frames in, and those it
// receives batches into. gRPC frees a sent batch into it once the batch is
// written (rawCodec.Marshal wraps it in a mem.Buffer of this pool), the
// reader gives a received batch back once no frame needs it (conn.readLoop),
// and conn.enqueue and rawCodec.Unmarshal take their buffers from it, so a
// busy stream reuses a few buffers instead of allocating one per gRPC
// message: those allocations were a third of the bytes a process of the
// one-way benchmark allocated, and clearing them, collecting them and the
// scavenger returning their pages to the OS took a fifth of its CPU.
//
// Buffers come in batchTierCount sizes, tierSize(i); a request above the
// largest (a frame bigger than MaxBatchBytes) is allocated and not kept.
// Each tier keeps at most tierKeep(i) free buffers in a channel rather than
// a sync.Pool, which drops its buffers at every garbage collection: here a
// collection runs every few milliseconds under load, and the buffers came
// back as fresh allocations. Buffers are not cleared: a batch is only ever
// read up to what was written into it.
type batchPool struct {
	tiers [batchTierCount]chan *[]byte // free buffers of capacity tierSize(i), made by init
}

// batchTierCount is how many buffer sizes batchPool keeps.
const batchTierCount = 5

// tierSize is the capacity of the buffers of tier i: 4 KiB, 16 KiB, 64 KiB,
// 256 KiB (DefaultMaxBatchBytes) and 1 MiB. Below 4 KiB gRPC would not pool
// anyway (mem.IsBelowBufferPoolingThreshold).
func tierSize(i int) int { return 4 << 10 << (2 * i) }

// tierKeep is how many free buffers tier i keeps: 16 of the small ones, 4 of
// the two largest, so a transport keeps at most 6.3 MiB.
func tierKeep(i int) int {
	if i >= 3 {
		return 4
	}
	return 16
}

// init makes the free lists. The zero batchPool is not usable.
func (p *batchPool) init() {
	for i := range p.tiers {
		p.tiers[i] = make(chan *[]byte, tierKeep(i))
	}
}

// Get implements mem.BufferPool: a buffer of length n and at least that
// capacity.
func (p *batchPool) Get(n int) *[]byte {
	for i := range batchTierCount {
		size := tierSize(i)
		if n > size {
			continue
		}
		select {
		case b := <-p.tiers[i]:
			*b = (*b)[:n]
			return b
		default:
		}
		b := make([]byte, n, size)
		return &b
	}
	b := make([]byte, n)
	return &b
}

// Put implements mem.BufferPool. A buffer whose capacity is not a tier's
// (not from Get), or that finds its tier full, is left to the GC.
func (p *batchPool) Put(b *[]byte) {
	for i := range batchTierCount {
		if cap(*b) == tierSize(i) {
			select {
			case p.tiers[i] <- b:
			default:
			}
			return
		}
	}
}

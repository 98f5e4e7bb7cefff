package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

const rowDomain = "portcullis-audit-row-v1"

// hasher computes row hashes, reusing its buffers (not safe for concurrent use).
type hasher struct {
	h   hash.Hash
	buf []byte
}

func newHasher() *hasher { return &hasher{h: sha256.New(), buf: make([]byte, 0, 1024)} }

// rowHash returns SHA-256 over the canonical encoding (see doc.go). The returned
// slice is freshly allocated.
func (hs *hasher) rowHash(r *row) []byte {
	b := hs.buf[:0]
	b = append(b, rowDomain...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(r.TS))
	for _, s := range r.hashedStrings() {
		b = appendStr(b, *s)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(r.Status))
	b = appendStr(b, r.ErrorClass)
	b = binary.BigEndian.AppendUint64(b, uint64(r.LatencyMicros))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.PrevHash)))
	b = append(b, r.PrevHash...)
	hs.buf = b
	hs.h.Reset()
	hs.h.Write(b)
	return hs.h.Sum(nil)
}

// hashedStrings are the string fields between ts and status in the canonical
// encoding, in order; rowHash writes them and decodeRow reads them back.
func (r *row) hashedStrings() [19]*string {
	return [...]*string{&r.Kind, &r.RequestID, &r.DecisionID, &r.Sub, &r.Org,
		&r.Workspace, &r.Roles, &r.Session, &r.ClientAddr, &r.Surface, &r.Tool, &r.Method,
		&r.Path, &r.Args, &r.Decision, &r.Reason, &r.PolicyRevision, &r.ApprovalID, &r.Approver}
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

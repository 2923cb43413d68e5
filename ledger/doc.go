// Package ledger is the hub's append-only, tamper-evident audit log: a hash
// chain of entries in its own bbolt file, written by one group-committing
// writer, with a Certificate Transparency style Merkle tree (RFC 9162) and
// Ed25519-signed checkpoints (C2SP signed-note / tlog-checkpoint).
//
// Append-only: the package offers no way to change or delete an entry. The
// single exception is retention (Options.Retention, Prune), driven only by
// configuration: it cuts whole segments of old entries and leaves a signed
// anchor behind, so the remaining chain still verifies (see Retention).
//
// # Canonical entry encoding (version 1)
//
// Anyone can recompute an entry's hash from its exported fields. The
// canonical encoding Canonical(e) is the concatenation, in this order, of:
//
//	str("clearhub-ledger-entry/v1")
//	u64(Seq) u64(Time as int64, two's complement)
//	str(Node) str(Kind) str(Method) str(CallID) str(CSeq) str(From) str(To)
//	str(RURI) str(Src) str(Transport) str(SrcNet) str(DstNet)
//	u64(Status as int64, two's complement) str(Reason) str(BodyType)
//	bytes(BodySHA256) u8(BodyKept: 0 or 1) bytes(Body) bytes(PrevHash)
//
// where u64 is 8 bytes big-endian, u8 one byte, and str/bytes are a 4-byte
// big-endian length followed by the raw bytes (strings as their UTF-8 bytes;
// absent byte fields have length 0). Then
//
//	Hash     = SHA-256(Canonical(e))
//	PrevHash = Hash of entry Seq-1, or 32 zero bytes for Seq 1
//	leaf     = SHA-256(0x00 || Canonical(e) || Hash)     (RFC 9162 2.1.1)
//	node     = SHA-256(0x01 || left || right)
//
// Entry Seq s is Merkle leaf s-1. Seqs are per node, gap-free, from 1.
//
// # Storage
//
// One bbolt file per node. Buckets: "entries" (8-byte big-endian seq ->
// Canonical(e) || Hash, i.e. the leaf data), "merkle" (level byte || 8-byte
// index -> hash of the complete subtree of 2^level leaves starting at leaf
// index<<level, for level >= 4; levels 0-3 are hashed from "entries" on
// demand, and files written by earlier versions also hold levels 1-3, unused),
// "checkpoints" (tree size -> signed note), "anchors" (first retained seq ->
// signed anchor note), and the indexes, one row per key per batch:
//
//	idx_time  u64 t0 || u64 first seq -> "" (a single entry at time t0), or
//	          u64 last seq || u64 min time || u64 max time: the consecutive
//	          entries first..last, all within one second of t0
//	idx_net   u16 len || network || u64 first seq -> uvarint deltas of the
//	          batch's further seqs with that SrcNet or DstNet
//	idx_user  u16 len || NormalizeUser(From/To) || u64 first seq -> deltas
//
// No row spans a segment boundary (Options.SegmentSize). Every batch of
// entries, its Merkle nodes, its index rows and (when due) its checkpoint
// are written in one transaction, so a crash leaves either all or none of
// them in bbolt.
//
// # Write-ahead log
//
// Beside the bbolt file lie <Path>-wal-<n> files (wal.go). Append returns
// once its batch is durable in the WAL: one frame (the batch's "entries"
// values, length-prefixed, under one CRC-32C) written with one sequential
// write and one fdatasync. The batch then goes to bbolt in an ordinary
// synced transaction off the acknowledgement path (several WAL batches may
// share one), so bbolt is always a consistent prefix of the log and may lag
// the WAL by the batches in flight. A WAL file is deleted once a synced
// bbolt commit covers its last record; Close, with everything applied,
// deletes them all. Open replays the records beyond bbolt's last entry,
// checking CRC, seq continuity, node, hash and prev_hash (a tampered or
// missing record is a broken chain), drops a torn last frame (a write cut
// short by a crash, whose Append never returned), commits them to bbolt
// with fsync, and starts a fresh WAL.
//
// Reads see what bbolt holds. Size counts every acknowledged entry; Get,
// Export, Verify, the proofs and RootAt first wait (briefly: at most one
// bbolt commit) until bbolt holds the entries they are asked for, so an
// acknowledged entry is always readable. Tail delivers entries once they are
// in bbolt, and a checkpoint is published (LatestCheckpoint, Checkpoint's
// reply) only once it is stored there. If bbolt fails to take a batch the
// WAL already holds, the ledger stops accepting entries (errors wrap the
// cause) and keeps its WAL; reopening replays it.
//
// # Write path
//
// Callers encode their entry (canonical form with placeholders for seq and
// prev_hash); one writer goroutine stamps seq and prev_hash, hashes and
// pushes Merkle leaves as requests arrive; a WAL goroutine makes one batch
// at a time durable in the WAL, and an applier goroutine writes durable
// batches to bbolt behind it. While batch N is being committed,
// batch N+1 gathers and is already hashed against the state N leaves; nobody
// is acknowledged before their own batch is durable, and a failed batch
// rolls the writer back and re-stamps what gathered behind it. A batch is
// sealed as soon as the WAL is free (no group-commit linger, see writer.go),
// and applied to bbolt at most every 25 ms (applyEvery) in one transaction
// per group of batches.
//
// # Retention
//
// With Options.Retention, a background pass (owned by the Ledger, stopped by
// Close; Prune runs it on demand) cuts, from the start of the log, every
// complete segment of Options.SegmentSize entries (aligned to seq 1) whose
// newest entry is older than the retention age. A cut first appends a
// KindAnchor entry whose body (BodyType AnchorBodyType) is a signed anchor
// note, in the same transaction as the note's copy in "anchors" and a fresh
// checkpoint:
//
//	clearhub-ledger-anchor/v1\n<origin>\n<first retained seq>\n
//	<base64 prev_hash of that entry>\n<tree size at the cut>\n
//	<base64 root at that size>\n<time of the cut, ns>\n
//
// signed like a checkpoint. Then it deletes the older entries, their index
// rows and the Merkle nodes whose parent lies wholly inside the cut (no proof
// over retained entries can need them). The tree is never rewritten: leaf
// numbers, old roots and checkpoints stay valid, proofs for retained entries
// verify against old and new checkpoints, and Get/InclusionProof of a cut
// entry fail with ErrPruned (and ErrNotFound). Open and Verify start the
// chain at the newest anchor after checking its signature, its root against
// the stored tree and its anchor entry; without a valid anchor a missing
// prefix is a broken chain.
//
// # Checkpoints
//
// A checkpoint is a C2SP signed note whose text is
//
//	<origin>\n<decimal tree size>\n<base64 root hash>\n
//
// followed by a blank line and "— <key name> <base64(keyhash || signature)>\n",
// where keyhash is the first 4 bytes of SHA-256(key name || "\n" || 0x01 ||
// Ed25519 public key) and the signature is Ed25519 over the text. The origin
// defaults to "clearhub/<node id>" and the key name to the origin.
//
// # Export format (JSON Lines, ExportFormat)
//
// Every line is one JSON object with a "type":
//
//	header      format, node, origin, key_name, public_key (base64), tree_size,
//	            complete (true when no filter: entries 1..tree_size all follow),
//	            filter, created
//	checkpoint  node, note (the signed note text)
//	anchor      node, note (the signed anchor note), tree_size, path: the
//	            RFC 9162 consistency proof from the anchor's tree to the
//	            checkpoint of tree_size; present once the log was cut, and
//	            then a complete export starts at the anchor's first seq
//	neighbour   node, seq, hash: the predecessor of the run that follows
//	entry       the Entry fields (byte fields base64)
//	proof       node, seq, tree_size, path: RFC 9162 inclusion proof of the
//	            last entry of the preceding run in the checkpoint of tree_size
//
// Since every Hash covers PrevHash, a proof for the last entry of a run of
// consecutive entries commits every entry of the run up to it. VerifyExport
// checks it all offline, decoding entry lines with the strict DecodeEntryJSON
// (unknown, duplicate or mistyped fields are errors), opening checkpoints
// with golang.org/x/mod/sumdb/note and checking proofs with
// github.com/transparency-dev/merkle. An entry is proven only when a verified
// proof to the root of a checkpoint whose signature verifies covers it or a
// later entry of its run; anything else (an entry after the run's proof,
// beyond every signed checkpoint, or in a file without one) is unproven and
// fails unless VerifyOptions.AllowUnproven. The header is unsigned: its
// tree_size must equal the newest signed checkpoint's size, and it proves
// nothing. WriteJSONL signs a checkpoint of every durable entry first, so an
// honest export is proven in full.
package ledger

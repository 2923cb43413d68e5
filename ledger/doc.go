// Package ledger is the hub's append-only, tamper-evident audit log: a hash
// chain of entries in its own bbolt file, written by one group-committing
// writer, with a Certificate Transparency style Merkle tree (RFC 9162) and
// Ed25519-signed checkpoints (C2SP signed-note / tlog-checkpoint).
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
// index<<level, for level >= 1; level 0 is hashed from "entries" on demand),
// "checkpoints" (tree size -> signed note), and the indexes "idx_time"
// (time || seq), "idx_net" (u16 len || network || seq, for SrcNet and DstNet)
// and "idx_user" (u16 len || NormalizeUser(From/To) || seq). Every batch of
// entries, its Merkle nodes, its index keys and (when due) its checkpoint are
// written in one transaction, so a crash leaves either all or none of them.
// Nothing in the package updates or deletes an entry.
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
//	neighbour   node, seq, hash: the predecessor of the run that follows
//	entry       the Entry fields (byte fields base64)
//	proof       node, seq, tree_size, path: RFC 9162 inclusion proof of the
//	            last entry of the preceding run in the checkpoint of tree_size
//
// Since every Hash covers PrevHash, a proof for the last entry of a run of
// consecutive entries commits every entry of the run. VerifyExport checks it
// all offline.
package ledger

package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoints use the C2SP tlog-checkpoint body (origin, decimal tree size,
// base64 root hash, each on its own line) wrapped in a C2SP signed-note with
// an Ed25519 signature line "— <name> <base64(keyhash || sig)>".

// ErrSignature is wrapped by every checkpoint signature failure.
var ErrSignature = errors.New("ledger: checkpoint signature does not verify")

// algEd25519 is the signed-note signature type byte for Ed25519.
const algEd25519 = 0x01

// Checkpoint is a signed statement of the tree: origin, size and root hash.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	// Note is the full signed note text (body, blank line, signature lines).
	Note []byte
}

// KeyHash is the signed-note key ID of an Ed25519 key: the first 4 bytes of
// SHA-256(name || "\n" || 0x01 || pub), big-endian.
func KeyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', algEd25519})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// VerifierKey formats the signed-note verifier key string
// "<name>+<hex keyhash>+<base64(0x01 || pub)>" for distribution to members.
func VerifierKey(name string, pub ed25519.PublicKey) string {
	return fmt.Sprintf("%s+%08x+%s", name, KeyHash(name, pub),
		base64.StdEncoding.EncodeToString(append([]byte{algEd25519}, pub...)))
}

// ParseVerifierKey is the inverse of VerifierKey.
func ParseVerifierKey(vkey string) (name string, pub ed25519.PublicKey, err error) {
	i := strings.LastIndexByte(vkey, '+')
	if i < 0 {
		return "", nil, fmt.Errorf("ledger: verifier key %q: missing fields", vkey)
	}
	j := strings.LastIndexByte(vkey[:i], '+')
	if j < 0 {
		return "", nil, fmt.Errorf("ledger: verifier key %q: missing fields", vkey)
	}
	name, hashHex, keyB64 := vkey[:j], vkey[j+1:i], vkey[i+1:]
	raw, err := base64.StdEncoding.DecodeString(keyB64)
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != algEd25519 {
		return "", nil, fmt.Errorf("ledger: verifier key %q: not an Ed25519 key", vkey)
	}
	pub = ed25519.PublicKey(raw[1:])
	want, err := hex.DecodeString(hashHex)
	if err != nil || len(want) != 4 || binary.BigEndian.Uint32(want) != KeyHash(name, pub) {
		return "", nil, fmt.Errorf("ledger: verifier key %q: key hash mismatch", vkey)
	}
	if err := checkKeyName(name); err != nil {
		return "", nil, err
	}
	return name, pub, nil
}

func checkKeyName(name string) error {
	if name == "" || !utf8.ValidString(name) || strings.ContainsAny(name, "+ \t\n\r") {
		return fmt.Errorf("ledger: key name %q must be non-empty UTF-8 without spaces or '+'", name)
	}
	return nil
}

func checkpointBody(origin string, size uint64, root []byte) []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root))
}

// SignCheckpoint returns the signed note for (origin, size, root).
func SignCheckpoint(origin string, size uint64, root []byte, keyName string, key ed25519.PrivateKey) ([]byte, error) {
	if err := checkKeyName(keyName); err != nil {
		return nil, err
	}
	if origin == "" || strings.ContainsAny(origin, "\n") {
		return nil, fmt.Errorf("ledger: bad checkpoint origin %q", origin)
	}
	if len(root) != HashSize {
		return nil, fmt.Errorf("ledger: root of %d bytes", len(root))
	}
	return signNote(checkpointBody(origin, size, root), keyName, key)
}

// signNote signs body (which ends in a newline) as a C2SP signed note, with
// golang.org/x/mod/sumdb/note (the reference implementation auditors use);
// the key stays ours (noteSigner).
func signNote(body []byte, keyName string, key ed25519.PrivateKey) ([]byte, error) {
	if err := checkKeyName(keyName); err != nil {
		return nil, err
	}
	if err := checkNoteText(body); err != nil {
		return nil, err
	}
	msg, err := note.Sign(&note.Note{Text: string(body)}, noteSigner{keyName, key})
	if err != nil {
		return nil, fmt.Errorf("ledger: sign note: %w", err)
	}
	return msg, nil
}

// checkNoteText rejects what note.Open would refuse to open: a text that
// is not UTF-8, holds control characters other than newline, or does not
// end in a newline. Signing such a text would make a note nobody can verify.
func checkNoteText(text []byte) error {
	if !utf8.Valid(text) || !bytes.HasSuffix(text, []byte("\n")) {
		return errors.New("ledger: note text must be UTF-8 ending in a newline")
	}
	if bytes.ContainsFunc(text, func(r rune) bool { return r < 0x20 && r != '\n' }) {
		return errors.New("ledger: note text holds a control character")
	}
	return nil
}

// noteSigner is a note.Signer over our Ed25519 key.
type noteSigner struct {
	name string
	key  ed25519.PrivateKey
}

func (s noteSigner) Name() string { return s.name }
func (s noteSigner) KeyHash() uint32 {
	return KeyHash(s.name, s.key.Public().(ed25519.PublicKey))
}
func (s noteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// NoteVerifier returns the note.Verifier of the Ed25519 key (keyName, pub).
func NoteVerifier(keyName string, pub ed25519.PublicKey) (note.Verifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("ledger: checkpoint key of %d bytes, want an Ed25519 key", len(pub))
	}
	if err := checkKeyName(keyName); err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(VerifierKey(keyName, pub))
	if err != nil {
		return nil, fmt.Errorf("ledger: verifier key %s: %w", keyName, err)
	}
	return v, nil
}

// ParseCheckpoint splits a signed note and parses its checkpoint body
// without checking any signature.
func ParseCheckpoint(note []byte) (*Checkpoint, error) {
	body, _, err := splitNote(note)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) < 3 {
		return nil, fmt.Errorf("ledger: checkpoint body has %d lines, want at least 3", len(lines))
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return nil, fmt.Errorf("ledger: checkpoint size %q is not a canonical decimal", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != HashSize {
		return nil, fmt.Errorf("ledger: checkpoint root %q is not a base64 SHA-256", lines[2])
	}
	return &Checkpoint{Origin: lines[0], Size: size, Root: root, Note: bytes.Clone(note)}, nil
}

// splitNote returns the signed text (ending in "\n") and the signature lines.
func splitNote(note []byte) (body []byte, sigs []string, err error) {
	if !utf8.Valid(note) {
		return nil, nil, errors.New("ledger: note is not UTF-8")
	}
	i := bytes.LastIndex(note, []byte("\n\n"))
	if i < 0 {
		return nil, nil, errors.New("ledger: note has no signature block")
	}
	body = note[:i+1]
	rest := string(note[i+2:])
	if !strings.HasSuffix(rest, "\n") {
		return nil, nil, errors.New("ledger: note does not end in a newline")
	}
	sigs = strings.Split(strings.TrimSuffix(rest, "\n"), "\n")
	return body, sigs, nil
}

// VerifyCheckpoint checks that note carries a valid Ed25519 signature by the
// key (keyName, pub) and returns the parsed checkpoint. Signatures by other
// keys are ignored, as signed-note prescribes.
func VerifyCheckpoint(msg []byte, keyName string, pub ed25519.PublicKey) (*Checkpoint, error) {
	v, err := NoteVerifier(keyName, pub)
	if err != nil {
		return nil, err
	}
	return OpenCheckpoint(msg, v)
}

// OpenCheckpoint opens the signed note with note.Open, requiring a valid
// signature by v, and parses the checkpoint it carries.
func OpenCheckpoint(msg []byte, v note.Verifier) (*Checkpoint, error) {
	cp, err := ParseCheckpoint(msg)
	if err != nil {
		return nil, err
	}
	if err := openNote(msg, v); err != nil {
		return nil, fmt.Errorf("%w, checkpoint size %d", err, cp.Size)
	}
	return cp, nil
}

// verifyNoteSig checks that note carries a valid Ed25519 signature by the
// key (keyName, pub). Signatures by other keys are ignored, as signed-note
// prescribes.
func verifyNoteSig(msg []byte, keyName string, pub ed25519.PublicKey) error {
	v, err := NoteVerifier(keyName, pub)
	if err != nil {
		return err
	}
	return openNote(msg, v)
}

// openNote runs note.Open with v as the only known key. Failures of the
// signature itself wrap ErrSignature.
func openNote(msg []byte, v note.Verifier) error {
	_, err := note.Open(msg, note.VerifierList(v))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &unverified):
		return fmt.Errorf("%w: no signature by key %s", ErrSignature, v.Name())
	case errors.As(err, &invalid):
		return fmt.Errorf("%w: key %s", ErrSignature, v.Name())
	default:
		return fmt.Errorf("ledger: signed note: %w", err)
	}
}

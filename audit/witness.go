package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/audit/jsonenc"
)

// witnessMaxBytes is the size at which the witness file is rotated to Path + ".1"
// (replacing the previous one). The newest checkpoint alone pins every row before
// it (the chain links them), so the current file is enough for verify; at one line a
// second of activity, 64 MiB is a few days.
const witnessMaxBytes = 64 << 20

// witnessFile appends checkpoint lines to a file outside the database
// (Config.WitnessPath), as JSON lines in the shape ReadWitness reads, so
// `audit verify --witness <data_dir>/witness.log` needs no log redirection. It is
// used by the ingester goroutine only.
//
// Durability: a line is written with one write(2) on an O_APPEND file, after the
// checkpoint's own commit was fsynced, so the file never names a checkpoint the
// database lost. A killed process loses nothing it wrote. The file is fsynced at most
// once per checkpoint interval and at close, not per line: an OS crash or power loss
// can take the lines of the last interval, the window the interval leaves anyway, at
// one fsync per interval instead of one per checkpoint (under load a checkpoint comes
// every CheckpointEvery rows too).
type witnessFile struct {
	f         *os.File
	path      string
	buf       []byte
	size      int64
	syncEvery time.Duration
	lastSync  time.Time
	dirty     bool
	maxBytes  int64 // witnessMaxBytes; tests lower it
}

// openWitnessFile opens path for appending, creating it 0600. A last line cut short
// (a write torn by an OS crash, never complete) is dropped, so the next line does not
// run on from it and make the file unreadable.
func openWitnessFile(path string, syncEvery time.Duration) (*witnessFile, string, error) {
	w := &witnessFile{path: path, syncEvery: syncEvery, buf: make([]byte, 0, 512), maxBytes: witnessMaxBytes}
	warn, err := w.open()
	if err != nil {
		return nil, "", err
	}
	return w, warn, nil
}

func (w *witnessFile) open() (warn string, err error) {
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return "", fmt.Errorf("audit: opening witness file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return "", fmt.Errorf("audit: opening witness file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		// Created wider by someone else: the witness is evidence, readable by its owner only.
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return "", fmt.Errorf("audit: witness file %s: setting mode 0600: %w", w.path, err)
		}
	}
	size := st.Size()
	if size == 0 {
		// The new file's name must survive a crash too.
		if err := syncDir(filepath.Dir(w.path)); err != nil {
			f.Close()
			return "", fmt.Errorf("audit: witness file %s: syncing its directory: %w", w.path, err)
		}
	} else if keep, err := completeLines(f, size); err != nil {
		f.Close()
		return "", fmt.Errorf("audit: reading witness file: %w", err)
	} else if keep < size {
		if err := f.Truncate(keep); err != nil {
			f.Close()
			return "", fmt.Errorf("audit: witness file %s: dropping an incomplete last line: %w", w.path, err)
		}
		warn = fmt.Sprintf("the witness file %s ended in an incomplete line (%d bytes, a write cut short); dropped it", w.path, size-keep)
		size = keep
	}
	w.f, w.size, w.lastSync = f, size, time.Now()
	return warn, nil
}

// completeLines returns the length of f up to and including its last newline.
func completeLines(f *os.File, size int64) (int64, error) {
	var b [4096]byte
	end := size
	for end > 0 {
		n := int64(len(b))
		if n > end {
			n = end
		}
		if _, err := f.ReadAt(b[:n], end-n); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(b[:n], '\n'); i >= 0 {
			return end - n + int64(i) + 1, nil
		}
		end -= n
	}
	return 0, nil
}

// opened records the log's identity at start: the line a reader of the file checks
// the log id of the checkpoints against.
func (w *witnessFile) opened(now time.Time, dbPath, logID, keyID string, seq int64) error {
	b := w.begin(now, "audit: log open")
	b = appendField(b, "path", dbPath)
	b = appendField(b, "log_id", logID)
	b = strconv.AppendInt(append(b, `,"seq":`...), seq, 10)
	b = appendField(b, "key_id", keyID)
	return w.write(append(b, "}\n"...), false)
}

// checkpoint appends c's line. It rotates the file first when the line would take it
// past maxBytes, so a fresh file always starts with a checkpoint.
func (w *witnessFile) checkpoint(now time.Time, c *checkpoint) error {
	b := w.begin(now, "audit checkpoint")
	b = appendField(b, "kind", c.Kind)
	b = strconv.AppendInt(append(b, `,"seq":`...), c.Seq, 10)
	b = append(b, `,"head_hash":"`...)
	b = hex.AppendEncode(b, c.Head)
	b = strconv.AppendInt(append(b, `","ts":`...), c.TS, 10)
	b = appendField(b, "key_id", c.KeyID)
	b = appendField(b, "log_id", c.LogID)
	b = append(b, `,"signature":"`...)
	b = base64.StdEncoding.AppendEncode(b, c.Signature)
	return w.write(append(b, "\"}\n"...), true)
}

// begin starts a line the way slog's JSON handler does, so the file reads like a log.
func (w *witnessFile) begin(now time.Time, msg string) []byte {
	b := append(w.buf[:0], `{"time":"`...)
	b = now.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO"`...)
	return appendField(b, "msg", msg)
}

func appendField(b []byte, name, v string) []byte {
	b = append(append(append(b, `,"`...), name...), `":`...)
	return jsonenc.AppendString(b, v)
}

func (w *witnessFile) write(line []byte, mayRotate bool) error {
	w.buf = line[:0] // keep the grown buffer
	if mayRotate && w.size > 0 && w.size+int64(len(line)) > w.maxBytes {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(line)
	w.size += int64(n)
	w.dirty = true
	if err != nil {
		return fmt.Errorf("audit: writing witness file %s: %w", w.path, err)
	}
	if time.Since(w.lastSync) >= w.syncEvery {
		return w.sync()
	}
	return nil
}

// rotate renames the file to path + ".1", synced, and starts a new one.
func (w *witnessFile) rotate() error {
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("audit: syncing witness file before rotating: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("audit: closing witness file before rotating: %w", err)
	}
	if err := os.Rename(w.path, w.path+".1"); err != nil {
		// Carry on appending to the same file rather than lose lines.
		_, oerr := w.open()
		return errors.Join(fmt.Errorf("audit: rotating witness file: %w", err), oerr)
	}
	_, err := w.open()
	return err
}

// syncIfDirty fsyncs the lines written since the last fsync. The ingester calls it on
// each checkpoint tick, so every line is synced within one interval of its write,
// also when the log goes idle after it.
func (w *witnessFile) syncIfDirty() error {
	if !w.dirty {
		return nil
	}
	return w.sync()
}

func (w *witnessFile) sync() error {
	w.lastSync = time.Now()
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("audit: syncing witness file %s: %w", w.path, err)
	}
	w.dirty = false
	return nil
}

func (w *witnessFile) close() error {
	if w == nil || w.f == nil {
		return nil
	}
	var err error
	if w.dirty {
		err = w.sync()
	}
	return errors.Join(err, w.f.Close())
}

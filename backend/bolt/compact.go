package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/bbolt"
)

// compactTxBytes is how much one transaction of Compact copies before it
// commits, so that copying a large file needs bounded memory.
const compactTxBytes = 32 << 20

// Compact copies the live data of the database into a new file at dst,
// which must not exist yet. A bbolt file never shrinks: pages freed by
// Sweep are reused but never given back, so a file that once held a large
// backlog stays large. The copy holds only what is live, packed tight.
//
// The copy is a consistent snapshot taken at the start of the call; the
// backend keeps working meanwhile, and what it writes afterwards is not in
// dst. To switch to the compacted file, stop the engine, Close, rename dst
// over the old path and Open it again (leases in the snapshot are reaped on
// that Open, like after a crash). The snapshot's read transaction stays
// open until the copy is done, so writes that must grow the file wait for
// it.
func (b *Backend) Compact(ctx context.Context, dst string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if abs, err := filepath.Abs(dst); err == nil {
		if src, err := filepath.Abs(b.path); err == nil && abs == src {
			return fmt.Errorf("bolt: compact: destination is the open database %s", dst)
		}
	}
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("bolt: compact: destination %s: %w", dst, os.ErrExist)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("bolt: compact: %w", err)
	}
	if dir := filepath.Dir(dst); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("bolt: compact: %w", err)
		}
	}
	out, err := bbolt.Open(dst, b.opts.FileMode, &bbolt.Options{Timeout: b.opts.OpenTimeout, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("bolt: compact: open %s: %w", dst, err)
	}
	err = b.view(ctx, func(src *bbolt.Tx) error { return copyTo(ctx, out, src) })
	if cerr := out.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(dst)
		return fmt.Errorf("bolt: compact to %s: %w", dst, err)
	}
	return nil
}

// copyTo copies every top-level bucket of src into dst, in key order and
// packed full, committing every compactTxBytes. The meta bucket goes last,
// so a copy cut short is never taken for a jobrelay database.
func copyTo(ctx context.Context, dst *bbolt.DB, src *bbolt.Tx) error {
	order := append(append([][]byte{}, allBuckets[1:]...), bucketMeta)
	tx, err := dst.Begin(true)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	size := 0
	for _, name := range order {
		sb := src.Bucket(name)
		if sb == nil {
			continue
		}
		db, err := tx.CreateBucketIfNotExists(name)
		if err != nil {
			return err
		}
		db.FillPercent = 1
		c := sb.Cursor()
		n := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := db.Put(k, v); err != nil {
				return err
			}
			if size += len(k) + len(v); size >= compactTxBytes {
				if err := tx.Commit(); err != nil {
					return err
				}
				if tx, err = dst.Begin(true); err != nil {
					return err
				}
				db = tx.Bucket(name)
				db.FillPercent = 1
				size = 0
			}
		}
	}
	return tx.Commit()
}

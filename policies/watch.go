package policies

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch reloads the policy (and the shadow policy, if any) when its files change, until
// ctx is done. A file path is watched through its directory (editors replace files by
// rename, which a watch on the file itself would lose); a directory is watched with its
// subdirectories. Events are debounced, and every reload is logged as applied or
// refused with the live revision.
func (e *Engine) Watch(ctx context.Context) error {
	if e.opts.Path == "" {
		return errors.New("policies: watch: the policy has no path (embedded modules do not change)")
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policies: watch: %w", err)
	}
	defer w.Close()

	var roots []watchRoot
	for _, p := range []string{e.opts.Path, e.opts.ShadowPath} {
		if p == "" {
			continue
		}
		r, err := addRoot(w, p)
		if err != nil {
			return err
		}
		roots = append(roots, r)
	}
	e.log.Info("watching policy for changes", "path", e.opts.Path, "shadow_path", e.opts.ShadowPath, "revision", e.Revision())

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("policies: watch: watcher closed")
			}
			for _, r := range roots {
				if r.dir && ev.Has(fsnotify.Create) && (ev.Name == r.path || strings.HasPrefix(ev.Name, r.path+string(filepath.Separator))) {
					if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() && !strings.HasPrefix(fi.Name(), ".") {
						if err := addTree(w, ev.Name); err != nil {
							e.log.Warn("policy watch: cannot watch new directory", "path", ev.Name, "err", err)
						}
						timer.Reset(e.opts.debounce)
					}
				}
				if ev.Op != fsnotify.Chmod && r.relevant(ev.Name) {
					timer.Reset(e.opts.debounce)
				}
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("policies: watch: watcher closed")
			}
			e.log.Warn("policy watch error", "err", err)
		case <-timer.C:
			// Reload logs both outcomes with the live revision; the error needs no second line.
			_ = e.Reload(ctx)
		}
	}
}

// watchRoot is one watched policy path and the filter for events under it. target is
// where a symlinked policy file points (its directory is watched too, so an edit of the
// target is seen, not only a change of the link).
type watchRoot struct {
	path   string
	dir    bool
	target string
}

func (r watchRoot) relevant(name string) bool {
	name = filepath.Clean(name)
	if r.target != "" && name == r.target {
		return true
	}
	base := filepath.Base(name)
	if strings.HasPrefix(base, "..") && filepath.Dir(name) == r.dirOf() {
		// Kubernetes ConfigMap/Secret volumes update by swapping a "..data" symlink; the
		// policy file's own name sees no event.
		return true
	}
	if !r.dir {
		return name == r.path
	}
	return strings.HasPrefix(name, r.path+string(filepath.Separator)) && !strings.HasPrefix(base, ".") &&
		(strings.HasSuffix(base, ".rego") || isDataFile(base))
}

// dirOf is the directory whose entries can replace the policy.
func (r watchRoot) dirOf() string {
	if r.dir {
		return r.path
	}
	return filepath.Dir(r.path)
}

func addRoot(w *fsnotify.Watcher, path string) (watchRoot, error) {
	root := filepath.Clean(path)
	st, err := os.Stat(root)
	if err != nil {
		return watchRoot{}, fmt.Errorf("policies: watch: %w", err)
	}
	if st.IsDir() {
		if err := addTree(w, root); err != nil {
			return watchRoot{}, fmt.Errorf("policies: watch %s: %w", root, err)
		}
		// The parent too: a directory replaced by another (mv pd pd.old; mkdir pd) is seen
		// as a create of the root, and the new tree is watched then.
		if err := w.Add(filepath.Dir(root)); err != nil {
			return watchRoot{}, fmt.Errorf("policies: watch %s: %w", filepath.Dir(root), err)
		}
		return watchRoot{path: root, dir: true}, nil
	}
	if err := w.Add(filepath.Dir(root)); err != nil {
		return watchRoot{}, fmt.Errorf("policies: watch %s: %w", filepath.Dir(root), err)
	}
	r := watchRoot{path: root}
	if target, err := filepath.EvalSymlinks(root); err == nil && target != root {
		if abs, err := filepath.Abs(root); err != nil || target != abs {
			r.target = target
			if err := w.Add(filepath.Dir(target)); err != nil {
				return watchRoot{}, fmt.Errorf("policies: watch %s (where %s points): %w", filepath.Dir(target), root, err)
			}
		}
	}
	return r, nil
}

func addTree(w *fsnotify.Watcher, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		return w.Add(p)
	})
}

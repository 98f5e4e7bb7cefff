//go:build !unix

package audit

import (
	"fmt"
	"os"
)

// lockFile opens path; without flock, one writer per audit log is not enforced here.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: opening lock file: %w", err)
	}
	return f, nil
}

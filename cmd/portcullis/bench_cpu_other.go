//go:build !unix

package main

import "time"

// processCPU is not measured on this platform; the bench prints 0 CPU per request.
func processCPU() time.Duration { return 0 }

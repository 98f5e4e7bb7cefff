// Package jsonenc appends JSON encodings to byte slices without reflection: strings
// escaped as encoding/json escapes them, and decoded JSON values (maps, slices, strings,
// numbers, booleans, null) with sorted keys. The audit trail's canonical row encoding,
// the proxy's identity assertions and policy input use it. It imports nothing of ours.
package jsonenc

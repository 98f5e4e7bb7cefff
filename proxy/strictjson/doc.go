// Package strictjson parses JSON that can be read only one way. It refuses what lenient
// decoders accept silently and different consumers read differently: duplicate object keys,
// nesting deeper than a limit, invalid UTF-8 (including lone surrogate escapes), trailing
// data. The proxy decides on the parsed value and forwards the very bytes it parsed, so the
// policy and the upstream can never disagree about what a request says.
package strictjson

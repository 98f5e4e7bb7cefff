package redact

import (
	"encoding/json"
	"testing"
)

func BenchmarkRedactor(b *testing.B) {
	r := New([]byte("0123456789abcdef0123456789abcdef"))
	var args map[string]any
	json.Unmarshal([]byte(`{"name":"prod openai","ai_provider_id":"openai","key":"sk-proj-abcdefghijklmnopqrstuvwxyz012345",
		"description":"main production integration for the ml team, owned by platform",
		"configurations":{"azure_resource_name":"res","azure_deployment_config":[{"azure_api_version":"2024-02-01","is_default":true}],
		"aws_access_key_id":"AKIAIOSFODNN7EXAMPLE","aws_secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		"workspace_ids":["ws-1","ws-2"],"note":"rotate quarterly","limit":100}`), &args)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = r.Value(args)
	}
}

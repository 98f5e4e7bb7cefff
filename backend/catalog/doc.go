// Package catalog holds the provider catalog of the integrations backend: one row per
// connectable provider (key, display data, auth types, required, secret and URL fields).
// The catalog is data, not code (seed 002): the default is embedded from providers.yaml
// and an operator may point the backend at another file; adding a provider is adding a row.
package catalog

// Package crypto seals the integrations backend's secret fields with AES-256-GCM
// envelope encryption: each value gets a fresh 32-byte data key, the data key is
// wrapped by a key-encryption key (KEK) that has an id, and associated data binds the
// ciphertext (and the wrapped key) to one org, integration and field, so a ciphertext
// moved to another record fails to open instead of decrypting to the wrong secret.
package crypto

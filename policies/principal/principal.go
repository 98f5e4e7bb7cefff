package principal

// Caller is the authenticated principal, as taken from verified JWT claims. Policy
// input, approvals, rate-limit keys and the identity assertion all speak of it.
type Caller struct {
	Sub       string         `json:"sub"`
	Org       string         `json:"org"`
	Workspace string         `json:"workspace"`
	Roles     []string       `json:"roles"`
	Session   string         `json:"session"`
	Claims    map[string]any `json:"claims,omitempty"`
}

// HasRole reports whether the caller holds role r.
func (c *Caller) HasRole(r string) bool {
	for _, x := range c.Roles {
		if x == r {
			return true
		}
	}
	return false
}

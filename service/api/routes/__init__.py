"""One router per resource; each is made for one registry and its settings (no per-request lookups)."""

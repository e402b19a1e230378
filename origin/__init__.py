"""The origin: Wharf's authoritative registry."""

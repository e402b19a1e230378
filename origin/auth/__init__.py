"""The origin's side of authentication: signing keys and the tokens it issues."""

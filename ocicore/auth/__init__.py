"""Token verification shared by the origin and the edges: scopes, bearer tokens, grants.

The origin issues Docker-style bearer tokens (JWTs with an ``access`` claim) and publishes its
public keys as a JWKS; anything holding the key set can check a token offline with
:class:`~ocicore.auth.tokens.TokenVerifier`.
"""

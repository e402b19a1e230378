"""Web plumbing shared by the origin and the edges: errors, request ids, logs, metrics, health."""

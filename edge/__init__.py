"""The edge: a pull-through caching and write-back node (built in a later issue)."""

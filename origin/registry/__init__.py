"""The origin's services: what a registry does, independent of HTTP."""

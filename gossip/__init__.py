"""Membership: who is alive, where, and how to reach them (built in a later issue)."""

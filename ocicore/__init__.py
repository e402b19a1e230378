"""OCI primitives shared by every Wharf component; imports nothing else of ours."""

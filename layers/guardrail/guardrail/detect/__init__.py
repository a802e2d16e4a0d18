"""Detect: read what CloudTrail delivered and decide what it is. Pure, but for the Lifecycle lookup."""

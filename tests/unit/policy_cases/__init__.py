"""Fixtures for the NetworkPolicy evaluator tests: cluster builders, truth tables, manifests."""

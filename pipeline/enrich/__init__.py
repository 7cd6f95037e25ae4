"""Enrichment: steps that add to a decoded batch what the warehouse needs (pure, no I/O)."""

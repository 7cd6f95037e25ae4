"""The event contract: these files are links to pipeline/contract/ (one source, both wheels)."""

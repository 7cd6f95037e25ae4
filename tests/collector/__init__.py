"""Tests of the HTTP collector (pipeline/collector)."""

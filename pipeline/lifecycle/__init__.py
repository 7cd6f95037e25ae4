"""Adoption lifecycle: pure rules and engine, state, outputs, and the faust agent."""

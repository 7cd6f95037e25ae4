"""Causal impact of adopting a capability on the DORA keys (`uptake impact`).

`estimate` holds the statistics (pure, on a weekly team panel); `store` reads the panel from
the warehouse's views and writes the estimates to impact_estimates (migration 0007).
"""

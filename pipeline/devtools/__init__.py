"""Developer tools on top of the runtime: local broker, simulator, bench, soak, fault injection."""

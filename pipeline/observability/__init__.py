"""Observability beyond the per-batch counters of `pipeline.observability.metrics`.

- `consumer_lag`: messages per partition not yet written and committed, sampled on a timer.
- `faust_sensor`: the few faust internals worth a series (commit duration, rebalances,
  backpressure), recorded into Uptake's registry without faust's web server.
- `adoption`: the headline adoption and DORA numbers as gauges, read from ClickHouse in the
  background so that a scrape never queries the warehouse.
- `config`: the settings of the above.

`docs/operations.md` documents every metric and alert; `deploy/prometheus/` holds the scrape
configuration and the recording and alerting rules.
"""

"""Grafana dashboards as code, and how their ClickHouse panels' SQL is expanded.

- `generate`: the list of dashboards, rendering them to JSON and writing/checking `dashboards/`
  (`uptake dashboards generate`, `uptake dashboards check`);
- `board`: datasources with fixed uids, the ClickHouse plugin's query model, grid layout;
- `panels`: the kinds of panels the dashboards use, with Uptake's defaults;
- `adoption`, `impact`, `ml_platform`, `team`, `pipeline_health`: one module per dashboard;
- `grafana_sql`: a panel's SQL expanded as Grafana and the ClickHouse plugin expand it (tests run
  every panel this way), or bound as ClickHouse query parameters (`uptake report`).

docs/dashboards.md describes every dashboard and panel.
"""

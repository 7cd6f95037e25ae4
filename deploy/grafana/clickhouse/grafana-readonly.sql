-- A read-only ClickHouse user for Grafana's ClickHouse datasource (server mode).
--
-- Run once as an administrator, after replacing the password:
--   clickhouse-client --user admin --password ... --multiquery < deploy/grafana/clickhouse/grafana-readonly.sql
--
-- readonly = 1: SELECT only, no INSERT/ALTER/DROP and no changing settings, except
-- max_execution_time, which the plugin's driver (clickhouse-go) sets on every query and which
-- the plugin's documentation asks to leave changeable. Grants: SELECT on the warehouse database
-- only (uptake; change it if UPTAKE_CLICKHOUSE_URL names another database).

CREATE SETTINGS PROFILE IF NOT EXISTS uptake_grafana_readonly SETTINGS
    readonly = 1,
    max_execution_time = 60 CHANGEABLE_IN_READONLY,
    max_result_rows = 1000000,
    max_memory_usage = 4000000000;

CREATE ROLE IF NOT EXISTS uptake_reader;

GRANT SELECT ON uptake.* TO uptake_reader;

CREATE USER IF NOT EXISTS grafana
    IDENTIFIED WITH sha256_password BY 'replace-this-password'
    SETTINGS PROFILE 'uptake_grafana_readonly';

GRANT uptake_reader TO grafana;

SET DEFAULT ROLE uptake_reader TO grafana;

-- Retried inserts fold in every table a batch reaches, materialized views included.
--
-- An insert into `events` runs the materialized views of 0003, 0005, 0008 and 0009. When one of
-- them fails after the `events` part was committed (a view's target out of parts, memory or
-- disk; or an insert that spans two month partitions and fails between its parts), the insert
-- raises but some rows are stored. The sink therefore retries the *identical* block with the
-- same `insert_deduplication_token` and `deduplicate_blocks_in_dependent_materialized_views=1`
-- (pipeline/sink/clickhouse.py): what landed is dropped as a duplicate — in `events` and in each
-- view's target — and what did not land is written, so every rollup gets each event once.
-- Non-replicated MergeTree tables only deduplicate with a window: the last N block ids are kept
-- per table. 1000 blocks cover the retries of one batch (a few blocks per table) many times.
-- An insert without a token is deduplicated by its content hash within the same window: the
-- sink always sends a token, and inserts into the views' targets come only from their views.

ALTER TABLE events MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE rejected_events MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE usage_minute MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE usage_hour MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE usage_day MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE deployments MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE model_trainings MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE incidents MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE usage_api_day MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE usage_user_day MODIFY SETTING non_replicated_deduplication_window = 1000;

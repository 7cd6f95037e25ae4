-- Causal impact estimates written by `uptake impact` (pipeline/impact/, docs/analysts.md
-- "Impact estimates"): per capability and DORA key, a staggered-adoption difference-in-
-- differences (Callaway & Sant'Anna) with team-clustered confidence intervals, and the naive
-- before/after beside it, labelled by `method`. Every run writes a whole new set of rows with
-- its computed_at; the view impact_estimates_latest shows the newest run.
CREATE TABLE IF NOT EXISTS impact_estimates
(
    capability LowCardinality(String),
    metric LowCardinality(String) COMMENT 'deployment_frequency | lead_time | change_failure_rate | recovery_time',
    method LowCardinality(String) COMMENT 'callaway_santanna_not_yet_treated | naive_before_after',
    scale LowCardinality(String) COMMENT 'factor: after = factor x before (1 = no change) | difference: after - before (0 = no change)',
    estimate Nullable(Float64) COMMENT 'NULL when status is insufficient_data',
    ci_low Nullable(Float64) COMMENT '95 % confidence interval (NULL for the naive method)',
    ci_high Nullable(Float64),
    treated_teams UInt32 COMMENT 'adopting teams whose data entered the estimate',
    control_teams UInt32 COMMENT 'teams that served as not-yet-adopted controls',
    pretrend_p Nullable(Float64) COMMENT 'p-value of the joint test that the pre-adoption effects are 0 (low: the parallel-trends assumption is in doubt)',
    status LowCardinality(String) COMMENT 'ok | insufficient_data | failed',
    note String COMMENT 'why data was insufficient, or what failed',
    weeks UInt32 COMMENT 'weeks in the panel',
    computed_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (capability, metric, method, computed_at);

CREATE VIEW IF NOT EXISTS impact_estimates_latest
AS
SELECT *
FROM impact_estimates
WHERE computed_at = (SELECT max(computed_at) FROM impact_estimates)
COMMENT 'The estimates of the newest `uptake impact` run';

-- The fingerprint of the pseudonym key (UPTAKE_PSEUDONYM_KEY, or <home>/pseudonym.key), so that
-- a process with a different key refuses to start instead of silently splitting every user in
-- two (docs/guarantees.md, "Secrets and the pseudonym key"; pipeline/enrich/key_fingerprint.py).
-- The fingerprint is HMAC-SHA256 of a fixed label under the key: it tells keys apart and cannot
-- be turned back into the key. The first process that writes events records its key's
-- fingerprint; the earliest row is the warehouse's key.
CREATE TABLE IF NOT EXISTS pseudonym_key_fingerprint
(
    fingerprint String COMMENT 'hex HMAC-SHA256(key, ''uptake pseudonym key fingerprint v1''); never the key',
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when a process first used this key with this warehouse',
    recorded_by String COMMENT 'host name of that process'
)
ENGINE = MergeTree
ORDER BY (recorded_at, fingerprint);

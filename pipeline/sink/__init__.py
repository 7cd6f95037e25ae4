"""The ClickHouse sink: idempotent batched writes; offsets move only after the insert."""

"""Operations commands: backfill and dead-letter replay."""

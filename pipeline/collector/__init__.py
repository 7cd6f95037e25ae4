"""`uptake collector`: an HTTP endpoint for platform usage events, in front of Kafka.

Services that cannot (or should not) talk to Kafka POST events over HTTPS with a bearer token;
the collector validates each event exactly as the worker would, produces the accepted ones to
the events topic and answers only after Kafka acknowledged them. See docs/collector.md.

Modules: `app` (aiohttp application and server), `config` (options), `auth` (bearer tokens),
`ingest` (body parsing and per-event judgement), `producer` (Kafka), `ratelimit`, `metrics`.
"""

from pipeline.collector.app import create_app, serve
from pipeline.collector.auth import TokenTable, hash_token
from pipeline.collector.config import CollectorConfig

__all__ = ["CollectorConfig", "TokenTable", "create_app", "hash_token", "serve"]

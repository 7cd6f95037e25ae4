"""`uptake collector`: an HTTP endpoint for platform usage events, in front of Kafka.

Services that cannot (or should not) talk to Kafka POST events over HTTPS with a bearer token;
the collector validates each event exactly as the worker would, produces the accepted ones to
the events topic and answers only after Kafka acknowledged them. It also mounts the webhook
adapters (`pipeline.collector.adapters`) of a webhooks file at `POST /v1/webhooks/<name>`. See
docs/collector.md and docs/webhooks.md.

Modules: `app` (aiohttp application and server), `config` (options, from `Settings`), `auth`
(bearer tokens), `ingest` (body parsing and per-event judgement), `webhooks` (the webhooks file
and routes), `producer` (Kafka), `ratelimit`, `metrics`.
"""

from pipeline.collector.app import create_app, serve
from pipeline.collector.auth import TokenTable, hash_token
from pipeline.collector.config import CollectorConfig

__all__ = ["CollectorConfig", "TokenTable", "create_app", "hash_token", "serve"]

"""Kafka plumbing: clients (producer), topics, security, undecodable batches."""

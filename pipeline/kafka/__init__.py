"""Kafka plumbing: clients (faust app, producer, admin), topics, security, undecodable batches."""

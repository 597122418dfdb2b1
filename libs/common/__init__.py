"""Shared runtime plumbing: NATS bus, embedded servers, process groups, settings."""

"""Postgres schema (migrations), sample rows, read-model tables and results queries."""

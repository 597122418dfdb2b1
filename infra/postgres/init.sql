-- Run once on an existing server; CallMeter's migrations create everything else.
CREATE DATABASE callmeter;
\c callmeter
-- Optional: enables hypertables, compression, retention and continuous aggregates.
CREATE EXTENSION IF NOT EXISTS timescaledb;

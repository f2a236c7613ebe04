-- More statements PostgreSQL refuses in a transaction block, mixed with ordinary ones (PostgreSQL 14+).
CREATE TABLE readings (taken_on date NOT NULL, value numeric) PARTITION BY RANGE (taken_on);
CREATE TABLE readings_2024 PARTITION OF readings FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE readings_2025 PARTITION OF readings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO readings SELECT date '2024-01-01' + g, g FROM generate_series(0, 500) AS g;
ALTER TABLE readings DETACH PARTITION readings_2024 CONCURRENTLY;
COMMENT ON TABLE readings_2024 IS 'archived; detached online';
REINDEX TABLE CONCURRENTLY readings_2025;
DISCARD ALL;
CREATE INDEX readings_value_idx ON readings (value);

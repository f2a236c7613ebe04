-- CREATE INDEX CONCURRENTLY cannot run in a transaction block: this file mixes it with ordinary DDL.
CREATE TABLE widgets (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, owner text);
INSERT INTO widgets (name, owner) SELECT 'widget ' || g, 'owner ' || (g % 7) FROM generate_series(1, 200) AS g;
/* ünïcödé 🚀 before the next statement moves byte offsets away from character offsets */
CREATE INDEX CONCURRENTLY widgets_name_idx ON widgets (name);
COMMENT ON INDEX widgets_name_idx IS 'built online; 🚀';
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS widgets_owner_name_key ON widgets (owner, name);
ALTER TABLE widgets ADD CONSTRAINT widgets_owner_name_key UNIQUE USING INDEX widgets_owner_name_key;
CREATE INDEX CONCURRENTLY widgets_lower_idx ON widgets (lower(name)) WHERE owner IS NOT NULL;
REINDEX INDEX CONCURRENTLY widgets_lower_idx;
DROP INDEX CONCURRENTLY IF EXISTS widgets_lower_idx;
CREATE INDEX widgets_owner_idx ON widgets (owner);
VACUUM (ANALYZE) widgets;

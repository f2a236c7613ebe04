-- Built CONCURRENTLY so that writes to widgets go on while the index builds; such a
-- statement cannot run inside a transaction, so this file runs in autocommit.
CREATE INDEX CONCURRENTLY IF NOT EXISTS widgets_owner_id_idx ON widgets (owner_id);

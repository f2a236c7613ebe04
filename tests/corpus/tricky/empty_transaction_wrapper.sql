-- A transaction wrapper around nothing.
BEGIN;
-- nothing here; really
COMMIT;

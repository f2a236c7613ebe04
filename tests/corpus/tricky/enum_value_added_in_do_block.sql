-- The idempotent spelling of ADD VALUE from before IF NOT EXISTS existed: psql commits the DO block
-- before the UPDATE uses the label; one transaction around the file could not.
CREATE TYPE stage AS ENUM ('new', 'done');
CREATE TABLE tasks (id integer PRIMARY KEY, stage stage NOT NULL DEFAULT 'new');
INSERT INTO tasks VALUES (1, 'new'), (2, 'done');
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_enum WHERE enumlabel = 'in_progress' AND enumtypid = 'stage'::regtype) THEN
        ALTER TYPE stage ADD VALUE 'in_progress' BEFORE 'done';
    END IF;
END
$$;
UPDATE tasks SET stage = 'in_progress' WHERE id = 1;

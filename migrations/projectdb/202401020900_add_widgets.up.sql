CREATE TYPE widget_state AS ENUM ('draft', 'active', 'retired');

CREATE TABLE widgets (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id    bigint       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text         NOT NULL,
    state       widget_state NOT NULL DEFAULT 'draft',
    updated_at  timestamptz  NOT NULL DEFAULT now()
);

-- Keep updated_at current on every change; the body holds semicolons and quotes,
-- which is why files are split by PostgreSQL's own parser and never on ';'.
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();  -- 'now' is the transaction's start; fine for auditing
    RETURN NEW;
END;
$$;

CREATE TRIGGER widgets_touch BEFORE UPDATE ON widgets
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE counters (name text PRIMARY KEY, n integer NOT NULL DEFAULT 0);
DO $do$
DECLARE
    v_sql text := $q$INSERT INTO counters (name, n) VALUES ('from $$q; block', 1)$q$;
BEGIN
    -- a comment inside the block; with 'quotes'
    EXECUTE $$INSERT INTO counters (name, n) VALUES ('dollar; quoted $x$', 2)$$;
    EXECUTE $a_1$INSERT INTO counters VALUES ('tag with digits; $$', 3)$a_1$;
    EXECUTE v_sql;
    RAISE NOTICE 'done; % rows', (SELECT count(*) FROM counters);
END
$do$;
DO LANGUAGE plpgsql $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'counter_kind') THEN
        CREATE TYPE counter_kind AS ENUM ('a;b', 'it''s');
    END IF;
END $$;
DO $_$ BEGIN PERFORM 1; END $_$;

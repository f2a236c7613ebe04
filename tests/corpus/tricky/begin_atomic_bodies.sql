-- SQL-standard bodies hold semicolons outside any quotes (PostgreSQL 14+).
CREATE TABLE totals (k text PRIMARY KEY, v integer NOT NULL);
CREATE FUNCTION add_total(p_k text, p_v integer) RETURNS integer
LANGUAGE sql
BEGIN ATOMIC
    INSERT INTO totals VALUES (p_k, p_v) ON CONFLICT (k) DO UPDATE SET v = totals.v + excluded.v;
    SELECT v FROM totals WHERE k = p_k;
END;
CREATE PROCEDURE seed_totals()
LANGUAGE sql
BEGIN ATOMIC
    SELECT add_total('a;b', 1);
    SELECT add_total('a;b', 2);
END;
CALL seed_totals();
CREATE INDEX CONCURRENTLY totals_v_idx ON totals (v);
SELECT add_total('after; index', 5);

-- Batched backfills commit inside DO blocks and procedures; allowed only outside a transaction block.
CREATE TABLE events (id integer PRIMARY KEY, processed boolean NOT NULL DEFAULT false);
INSERT INTO events SELECT g FROM generate_series(1, 100) AS g;
DO $$
BEGIN
    FOR batch IN 0..4 LOOP
        UPDATE events SET processed = true WHERE id > batch * 20 AND id <= (batch + 1) * 20;
        COMMIT;  -- keep each batch short; locks are released here
    END LOOP;
END
$$;
CREATE PROCEDURE mark_again()
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE events SET processed = false WHERE id % 10 = 0;
    COMMIT;
END
$$;
CALL mark_again();

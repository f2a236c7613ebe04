-- DO blocks whose strings and comments mention commit, rollback and ADD VALUE: they run
-- in the file's transaction like any statement (only a parsed COMMIT makes a block commit).
CREATE TYPE note_kind AS ENUM ('plain');
CREATE TABLE do_notes (id integer PRIMARY KEY, body text NOT NULL, kind note_kind DEFAULT 'plain');
DO $$
DECLARE
    word text := 'commit;';  -- commit; in a comment too
BEGIN
    RAISE NOTICE 'rollback and chain; %', word;
    INSERT INTO do_notes (id, body) VALUES (1, word);
    BEGIN
        INSERT INTO do_notes (id, body) VALUES (2, 'alter type note_kind add value ''x''');
    EXCEPTION WHEN unique_violation THEN
        NULL;
    END;
END
$$;
INSERT INTO do_notes (id, body) VALUES (3, 'after the block');

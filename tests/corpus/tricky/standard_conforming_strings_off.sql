-- Old pg_dump output: with standard_conforming_strings off, backslash escapes quotes in '' strings.
-- psql follows the server's setting when it splits statements; the file is valid SQL for it.
SET standard_conforming_strings = off;
SET escape_string_warning = off;
CREATE TABLE legacy_notes (id integer PRIMARY KEY, body text NOT NULL);
INSERT INTO legacy_notes VALUES (1, 'it\'s; legacy'), (2, 'back\\slash; \'quoted\'');
COMMENT ON TABLE legacy_notes IS 'from the 8.4 days; don\'t touch';

-- A comment with a semicolon; and an unbalanced quote: don't
CREATE TABLE notes ( -- trailing comment; with 'quote
    id integer PRIMARY KEY, /* inline; comment */
    body text NOT NULL -- it's the body; keep it
);
/* block comment; spanning
   several lines; with "quotes" and 'apostrophes
*/
INSERT INTO notes VALUES (1, 'one'); -- same line comment; INSERT INTO notes VALUES (99, 'ghost');
INSERT INTO notes /* mid-statement; comment */ VALUES (2, 'two;two');
-- DROP TABLE notes;
/* DROP TABLE notes; */
CREATE INDEX notes_body_idx ON notes (body) -- no semicolon on this line
;
SELECT 1; -- trailing; comment at the very end without a newline
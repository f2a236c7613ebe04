-- $$ and $tag$ inside string literals, identifiers and comments are not dollar quotes.
CREATE TABLE prices (
    id integer PRIMARY KEY,
    "price$$" numeric,          -- a quoted identifier holding $$
    amount$usd numeric,         -- $ inside an unquoted identifier
    note text DEFAULT 'costs $$5; or $fn$6'
);
INSERT INTO prices (id, "price$$", amount$usd, note) VALUES
    (1, 5, 6, 'a $$ b; c'),
    (2, 7, 8, '$body$ not a tag; $$'),
    (3, 9, 10, $$a literal; with 'quotes' and $x$ inside$$),
    (4, 11, 12, $x$ends with $$ ; still inside $x$);
COMMENT ON COLUMN prices."price$$" IS 'it''s $$; really';
CREATE FUNCTION price_label(p prices) RETURNS text LANGUAGE sql IMMUTABLE
    AS 'SELECT ''$$'' || $1.note || ''; $fn$''';
CREATE VIEW price_labels AS SELECT id, price_label(p) AS label FROM prices p;

-- CRLF line endings, and a last statement without its semicolon
CREATE TABLE crlf_table (
    id integer PRIMARY KEY,
    body text DEFAULT $$multi
line; body$$
);
CREATE FUNCTION crlf_fn() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RETURN 'crlf;';
END;
$$;
INSERT INTO crlf_table (id) VALUES (1)

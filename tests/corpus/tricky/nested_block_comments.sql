/* level 1; /* level 2; /* level 3 'unbalanced ; */ back to 2; */ back to 1; */
CREATE TABLE nested (id integer PRIMARY KEY, body text);
/* -- a line comment inside a block comment; */
INSERT INTO nested VALUES (1, '/* not a comment; */'), (2, '*/ also not'), (3, '-- nor this;');
/*
 * DROP TABLE nested; /* nested DROP TABLE nested; */
 */
COMMENT ON TABLE nested IS /* comment; between tokens */ 'nested /* comments */ work';

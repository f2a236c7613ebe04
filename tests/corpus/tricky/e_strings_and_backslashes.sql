-- With standard_conforming_strings on, '\' is a one-character string; E'' strings escape.
CREATE TABLE escapes (id integer PRIMARY KEY, s text NOT NULL);
INSERT INTO escapes VALUES (1, '\');
INSERT INTO escapes VALUES (2, E'\\');
INSERT INTO escapes VALUES (3, E'it\'s; \'quoted\'');
INSERT INTO escapes VALUES (4, E'line one\nline two;\ttab');
INSERT INTO escapes VALUES (5, E'\x41\101\u00e9\U0001F680');
INSERT INTO escapes VALUES (6, U&'d\0061t\+000061 caf\00e9');
INSERT INTO escapes VALUES (7, 'back\slash''s; end\');
INSERT INTO escapes VALUES (8, e'lower-case e\'; ok');
COMMENT ON TABLE escapes IS E'escapes; \'all\' of them \\';

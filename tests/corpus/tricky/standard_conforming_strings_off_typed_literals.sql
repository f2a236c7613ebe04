-- Old pg_dump output with standard_conforming_strings off: typed literals, continued
-- strings and a comment that looks like it closes a string, then the setting back on.
SET standard_conforming_strings = off;
CREATE TABLE legacy_dates (id integer PRIMARY KEY, at date NOT NULL, note text NOT NULL);
INSERT INTO legacy_dates VALUES (1, date'2024-01-02', 'it\'s' -- don't stop here
  ' continued');
INSERT INTO legacy_dates VALUES (2, DATE '2024-03-04', 'a\\b; \'commit;\'');
SET standard_conforming_strings = on;
INSERT INTO legacy_dates VALUES (3, date '2024-05-06', 'plain \ backslash');

-- Semicolons inside parentheses belong to one statement (a rule with several actions).
CREATE TABLE shipments (id integer PRIMARY KEY, status text NOT NULL);
CREATE TABLE shipment_log (id integer, status text);
CREATE RULE log_shipment AS ON INSERT TO shipments DO ALSO (
    INSERT INTO shipment_log VALUES (NEW.id, NEW.status);
    INSERT INTO shipment_log VALUES (NEW.id, 'logged; twice')
);
INSERT INTO shipments VALUES (1, 'sent;');

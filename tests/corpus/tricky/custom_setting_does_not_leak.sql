-- A custom setting that audit triggers read; a fresh session has no such setting at all (NULL).
SET app.tenant = 'acme; inc';
CREATE TABLE tenant_events (id integer PRIMARY KEY, tenant text DEFAULT current_setting('app.tenant', true));
INSERT INTO tenant_events (id) VALUES (1);

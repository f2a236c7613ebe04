CREATE VIEW widget_counts AS
SELECT u.id AS user_id, u.email, count(w.id) AS widgets
FROM users u
LEFT JOIN widgets w ON w.owner_id = u.id
GROUP BY u.id, u.email;

DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'projectdb_readonly') THEN
        CREATE ROLE projectdb_readonly NOLOGIN;
    END IF;
END
$do$;

GRANT SELECT ON users, widgets, widget_counts TO projectdb_readonly;

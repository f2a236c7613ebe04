REVOKE SELECT ON users, widgets, widget_counts FROM projectdb_readonly;
DROP VIEW widget_counts;

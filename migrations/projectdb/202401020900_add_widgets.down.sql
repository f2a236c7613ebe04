DROP TABLE widgets;
DROP FUNCTION touch_updated_at();
DROP TYPE widget_state;

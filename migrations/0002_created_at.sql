-- 0002: add a created_at column
ALTER TABLE users ADD COLUMN created_at TEXT;

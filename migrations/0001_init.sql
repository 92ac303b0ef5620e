-- 0001: create the users table
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);

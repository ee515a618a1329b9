"""Persistence: the only package that talks SQL. Tables, sessions, queries and migrations."""

"""Metadata of the origin: SQLAlchemy Core tables, migrations and the queries over them."""

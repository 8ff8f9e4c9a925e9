"""The data layer: plain async functions over named queries. Nothing else imports psycopg."""

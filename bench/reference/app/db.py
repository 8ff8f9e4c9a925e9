from sqlalchemy import text
from sqlmodel import SQLModel, create_engine

from app.config import settings

# Per worker process: 20 connections for FastAPI's 40 threads, all kept open. With the usual
# 10 + 10 overflow, the pool closed an overflow connection whenever one came back while 10 sat
# idle, so under 100 connections of load PostgreSQL forked a backend for a good share of the
# requests (seen as the postmaster's children's CPU time); a careful user sizes the pool instead.
#
# Sessions are opened inside the endpoints (`with Session(engine) as session:`), not by the
# tutorial's `Depends(get_session)` with `yield`: FastAPI validates a sync endpoint's response in
# the thread pool while such a dependency's session still holds its connection, so once more
# requests are in flight than there are connections, every thread can be waiting for a connection
# held by a request that is waiting for a thread, until the pool gives up after 30 s (a 500).
# Closing the session as the endpoint returns gives the connection back before that.
engine = create_engine(settings.database_url, pool_size=20, max_overflow=0)

# An arbitrary key: every worker takes this lock while creating the tables.
CREATE_TABLES_LOCK = 7_270_001


def create_db_and_tables() -> None:
    # The uvicorn workers start together; on a fresh database two concurrent create_all calls
    # would race to CREATE TABLE, so they take turns under an advisory lock.
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CREATE_TABLES_LOCK})
        SQLModel.metadata.create_all(connection)

"""Test databases on a Citus coordinator, for `make test-citus` (TASKD_TEST_CITUS_URL).

A database that the coordinator creates with `citus.enable_create_database_propagation` exists
on every worker too, but without Citus in it and without the cluster's node list: each one gets
the extension on every worker, then on the coordinator, which then registers itself and the
workers, as the maintenance database has them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg

CITUS_PROPAGATION = "SET citus.enable_create_database_propagation TO on"


def on_node(url: str, host: str, port: int) -> str:
    """`url`'s database on the node host:port (same user and password)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    address = f"{host}:{port}"
    return parts._replace(netloc=f"{credentials}@{address}" if credentials else address).geturl()


def create_database(coordinator_url: str, dbname: str, *, with_citus: bool = True) -> str:
    """Creates `dbname` across the cluster; its URL. With Citus in it and the nodes registered
    (ready for create_distributed_table) unless `with_citus` is false: then `install_citus`
    does that later, as for a database that was in use before Citus."""
    with psycopg.connect(coordinator_url, autocommit=True) as conn:
        conn.execute(CITUS_PROPAGATION)
        conn.execute(f"CREATE DATABASE {dbname}")
    url = urlsplit(coordinator_url)._replace(path="/" + dbname).geturl()
    if with_citus:
        install_citus(coordinator_url, url)
    return url


def install_citus(coordinator_url: str, url: str) -> None:
    """Citus in the database `url` on the coordinator and on every worker that
    `coordinator_url`'s database lists, with the coordinator and workers registered."""
    with psycopg.connect(coordinator_url, autocommit=True) as conn:
        workers = conn.execute(
            "SELECT nodename, nodeport FROM pg_dist_node"
            " WHERE groupid <> 0 AND noderole = 'primary' AND isactive ORDER BY nodeid"
        ).fetchall()
        coordinator = conn.execute(
            "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid = 0"
        ).fetchone()
    if not workers:
        raise RuntimeError(f"{coordinator_url}: no Citus workers in pg_dist_node")
    if coordinator is None:  # not registered in the maintenance database: the URL's address
        parts = urlsplit(coordinator_url)
        coordinator = (parts.hostname or "127.0.0.1", parts.port or 5432)
    for host, port in workers:
        with psycopg.connect(on_node(url, host, port)) as worker:
            worker.execute("CREATE EXTENSION IF NOT EXISTS citus")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION citus")
        conn.execute("SELECT citus_set_coordinator_host(%s, %s)", coordinator)
        for host, port in workers:
            conn.execute("SELECT citus_add_node(%s, %s)", (host, port))


def drop_database(coordinator_url: str, dbname: str) -> None:
    """Drops `dbname` from the coordinator, then from every worker, on each node itself: the
    coordinator passes DROP DATABASE on to the workers without FORCE, which fails while a
    session (Citus's own included) is still in the database there."""
    with psycopg.connect(coordinator_url, autocommit=True) as conn:
        workers = conn.execute(
            "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeid"
        ).fetchall()
        conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
    for host, port in workers:
        with psycopg.connect(on_node(coordinator_url, host, port), autocommit=True) as worker:
            worker.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")

from __future__ import annotations

import os

from tests.pgcluster import PgCluster


def test_throwaway_cluster_serves_a_fresh_database_over_its_socket_only(pg_cluster: PgCluster, pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None and int(version[0]) >= 110000
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
    assert os.path.exists(os.path.join(pg_cluster.socket_dir, ".s.PGSQL.5432"))

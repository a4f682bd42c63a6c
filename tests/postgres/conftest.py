from tests.pgcluster import pg_cluster, pg_driver, pg_url

__all__ = ["pg_cluster", "pg_driver", "pg_url"]

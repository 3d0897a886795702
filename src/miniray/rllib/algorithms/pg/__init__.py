from miniray.rllib.algorithms.pg.pg import PG, PGConfig, pg_loss

__all__ = ["PG", "PGConfig", "pg_loss"]

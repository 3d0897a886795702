"""The worker process: runs calls sent by its node (main.py) and reports results (executor.py)."""

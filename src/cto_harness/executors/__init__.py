"""Executors of `cto-harness suite` beyond this machine's worker processes (the seam they
implement is `core/executor.py`): `choose.py` picks one by name (`--executor`), `ray_executor.py`
is the driver side of `--executor ray`, `ray_node.py` what one Ray task does on its node,
`archive.py` the tar format both sides trust nothing in, `local_cluster.py` a Ray cluster on one
machine in a loopback-only network namespace (the tests and the benchmark)."""

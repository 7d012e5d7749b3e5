"""Test support shared by tests/ and benchmarks/: generated videos with known truth
(:mod:`testkit.synthetic`) and a local S3 server with a fault-injecting proxy (:mod:`testkit.s3`).

Not shipped in the wheel; importable from the repository root (pytest's ``pythonpath``, a
``sys.path`` entry in each benchmark script).
"""

"""The benchmark scripts, each printing tables of figures headed by the machine they were
measured on (:func:`benchmarks.measure.machine_header`), and the helpers they share
(:mod:`benchmarks.measure`).

From the checkout's root, a script runs as ``python -m benchmarks.NAME`` or as
``python benchmarks/NAME.py``: either way it imports the checkout's own ``pipeline``,
``testkit`` and ``benchmarks`` (see ``benchmarks/_checkout.py``).
"""

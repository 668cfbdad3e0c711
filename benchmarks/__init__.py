"""Benchmarks of gradxform against optax and the memory-bandwidth roofline.

Run ``python -m benchmarks.run`` (or ``python benchmarks/run.py``); see
``benchmarks/README.md`` for what is measured and how to read the table.
"""

"""Benchmark: bare oslo.messaging against the full computed stack, on one private broker.

Not part of the test suite and never pass/fail on speed: it measures and prints.
Run from the repository root with ``python -m tests.bench`` (or ``tools/bench.sh``);
``python -m tests.bench --help`` lists the options.
"""

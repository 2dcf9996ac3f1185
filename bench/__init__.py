"""Benchmarks for janus-rt (tokens/s, images/s, latency, memory-roofline fraction).

Empty until the fast path lands.
"""

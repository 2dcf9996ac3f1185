"""Triton kernels for janus-rt (KV-cache attention, dual-batch CFG sampling).

Empty until the fast path lands; the eager torch backend in `janus_rt` is the reference they are checked against.
"""

"""ONNX / TensorRT export stage for janus-rt.

Empty until the export stage lands; it will trace the modules of the torch backend in `janus_rt`.
"""

"""The toy Janus: a ~3 M parameter model in the official layout, trained here on procedural scenes (one coloured
shape on a coloured background), that draws what it is asked and answers questions about what it sees. It ships as
package data (`checkpoint/`, `--model toy`, `janus-rt demo`); it is the only set of weights janus-rt ships, and it is
not Janus.

`scenes` (the world, captions, questions, the procedural image tokeniser), `closed_form` (the parts written down,
and the fixed cell path), `model_spec` (its shape and tokenizer corpus), `train` (the training script: `python -m
janus_rt.toy.train --out DIR`), `evaluate` (cell accuracy, answers and quantized KL: `python -m
janus_rt.toy.evaluate DIR [--quantized]`), `shipped` (where the shipped checkpoint lives).
"""

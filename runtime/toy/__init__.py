"""The toy Janus (issue 22, in progress): a ~2.7 M parameter model in the official layout, trained here on procedural
scenes (one coloured shape on a coloured background), meant to draw what it is asked and answer questions about what
it sees. No trained checkpoint is shipped yet: the training script's output does not yet meet the semantic bar
(>= 95 % of cells as asked under guidance, right answers).

`scenes` (the world, captions, questions, the procedural image tokeniser), `closed_form` (the parts written down,
and the fixed cell path), `model_spec` (its shape and tokenizer corpus), `train` (the training script: `python -m
janus_rt.toy.train --out DIR`), `evaluate` (cell accuracy and answers: `python -m janus_rt.toy.evaluate DIR`).
"""

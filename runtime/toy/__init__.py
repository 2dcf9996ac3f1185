"""The toy Janus: a ~2 M parameter model in the official layout, trained here on procedural scenes (one coloured
shape on a coloured background), that draws what its prompt names and answers questions about what it sees.

`scenes` (the world, captions, questions, the procedural image tokeniser), `closed_form` (the parts written down),
`model_spec` (its shape), `train` (the training script), `checkpoint/` (the shipped weights, package data).
"""

"""The Janus model in torch: configuration, module tree, transformer, vision tower, VQ decoder, heads."""

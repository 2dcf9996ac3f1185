"""Checkpoint folders: weight files, strict key mapping, tokenizer, hub ids, summaries, tiny demo checkpoints."""

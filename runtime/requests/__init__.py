"""Request preparation: prompts, pixels, validation; what the engine takes."""

"""Request preparation: the one path from what a user asks to what the engine takes, per request kind.

    image.py    prepare_images: prompts + sampling -> formatted, tokenized prompts that fit (PreparedImages)
    chat.py     prepare_chat: a Conversation (turns, system prompt, images) -> ids, pixels, sampling (PreparedChat)
    context.py  RequestContext: what preparation needs from a loaded model (tokenizer, format, sizes, capacity)
    prompts.py  the reference's prompt formats
    pixels.py   image pre-processing (understanding) and post-processing (decoded images)

The library (`Janus.submit_images` / `submit_chat`), the CLI and the server each call `prepare_*` once, then
`Janus.submit_prepared`. Cheap checks run first (types, counts, ranges), then formatting and tokenizing, then the
engine's one capacity check (`janus_rt.engine.capacity`), and pixels last.
"""

"""Prompt formats and tokenization against the reference's literal strings (janus-reference.md section 4)."""

from __future__ import annotations

import pytest

from janus_rt.requests.prompts import generation_prompt, understanding_prompt
from janus_rt.checkpoint.tiny import TinySpec, build_tokenizer, write_tiny_checkpoint
from janus_rt.checkpoint.tokenizer import BOS, JanusTokenizer
from janus_rt.model.prefill import expand_placeholders
from oracle import transformers_oracle

SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content that the "
          "user provides, and assist the user with a variety of tasks using natural language.")


def test_understanding_prompt_pro_is_the_reference_string():
    assert understanding_prompt("What is this?", 1, "pro") == (
        SYSTEM + "\n\n<|User|>: <image_placeholder>\nWhat is this?\n\n<|Assistant|>:")


def test_understanding_prompt_legacy_and_explicit_placeholders():
    # the reference strips the whole message content, after the placeholder line was put in front
    assert understanding_prompt("  Describe it.  ", 1, "legacy") == (
        SYSTEM + "\n\nUser: <image_placeholder>\n  Describe it.\n\nAssistant:")
    explicit = "Compare <image_placeholder> with <image_placeholder>."
    assert understanding_prompt(explicit, 2, "pro").endswith("<|User|>: " + explicit + "\n\n<|Assistant|>:")
    assert understanding_prompt("Hi", 0, "pro", system_prompt="") == "<|User|>: Hi\n\n<|Assistant|>:"


def test_generation_prompts_are_the_reference_strings():
    assert generation_prompt("a cat", "pro") == "<|User|>: a cat\n\n<|Assistant|>:<begin_of_image>"
    assert generation_prompt("a cat\n", "legacy") == "User: a cat\n\nAssistant:<begin_of_image>"


@pytest.mark.parametrize("post_processor", [True, False])
def test_bos_exactly_once_whatever_the_post_processor(tmp_path, post_processor: bool):
    ckpt = write_tiny_checkpoint(tmp_path / "c", TinySpec(bos_post_processor=post_processor))
    tok = JanusTokenizer(ckpt)
    bos = tok.token_id(BOS)
    for text in ["Hello, how are you?", BOS + "Hello", "<|User|>: x\n\n<|Assistant|>:<begin_of_image>"]:
        ids = tok.encode(text)
        assert ids[0] == bos and ids.count(bos) == 1
    raw = build_tokenizer(TinySpec(bos_post_processor=post_processor)).encode("Hello, how are you?", add_special_tokens=False).ids
    assert tok.encode("Hello, how are you?") == [bos] + raw


def test_special_tokens_are_single_ids_and_looked_up_by_string(tiny_official):
    tok = JanusTokenizer(tiny_official)
    sp = tok.special
    ids = tok.encode(generation_prompt("a cat", "pro"))
    assert ids[-1] == sp.begin_of_image and ids[0] == sp.bos
    assert tok.token_id("<|User|>") in ids and tok.token_id("<|Assistant|>") in ids
    assert len({sp.bos, sp.eos, sp.pad, sp.image_placeholder, sp.begin_of_image, sp.end_of_image}) == 6
    # ids come from the file, not from the real checkpoints' numbers (100000, 100001, ...)
    assert sp.bos == tok._tok.token_to_id(BOS) and sp.bos < 1000


def test_placeholder_expansion_gives_578_tokens_per_image():
    ids = [1, 7, 2, 7, 3]
    out = expand_placeholders(ids, placeholder=7, begin=8, end=9, tokens_per_image=576)
    assert len(out) == len(ids) - 2 + 2 * 578
    first = out.index(8)
    assert out[first:first + 578] == [8] + [7] * 576 + [9]
    assert out.count(7) == 2 * 576 and out[0] == 1 and out[-1] == 3


@pytest.mark.parametrize("clean_up", [False, True])
def test_decode_matches_transformers_fast_tokenizer(tmp_path, clean_up: bool):
    """Special tokens skipped; spaces cleaned up only when tokenizer_config.json asks, as transformers 4.x does.

    (transformers 5 ignores the flag for BPE tokenizers; the reference was written against 4.x, so the 4.x
    cleanup, still available as `clean_up_tokenization`, is the oracle for the flag's effect.)
    """
    import json

    transformers = transformers_oracle()
    ckpt = write_tiny_checkpoint(tmp_path / "c")
    config = json.loads((ckpt / "tokenizer_config.json").read_text())
    (ckpt / "tokenizer_config.json").write_text(json.dumps({**config, "clean_up_tokenization_spaces": clean_up}))
    ours = JanusTokenizer(ckpt)
    ref = transformers.PreTrainedTokenizerFast(tokenizer_file=str(ckpt / "tokenizer.json"))
    text = "Hello , world ! It 's a cat . <|User|> Isn't it ?<｜end▁of▁sentence｜>"
    ids = ours.encode(text)
    expected = ref.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if clean_up:
        expected = ref.clean_up_tokenization(expected)
    assert ours.decode(ids) == expected
    assert ("world!" in ours.decode(ids)) == clean_up and "<|User|>" not in ours.decode(ids)

"""Tokenizer wrapper: `tokenizer.json` through the `tokenizers` library, special ids looked up by string.

`encode` puts BOS first exactly once, whether or not the file's post-processor adds one (the reference's
`LlamaTokenizerFast.encode` prepends BOS and adds no EOS).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from janus_rt.model.config_loading import read_json
from janus_rt.errors import CheckpointError

BOS = "<｜begin▁of▁sentence｜>"  # fullwidth bar U+FF5C, U+2581
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
IMAGE_PLACEHOLDER = "<image_placeholder>"
BEGIN_OF_IMAGE = "<begin_of_image>"
END_OF_IMAGE = "<end_of_image>"
PRO_USER = "<|User|>"
PRO_ASSISTANT = "<|Assistant|>"


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    eos: int
    pad: int
    image_placeholder: int
    begin_of_image: int
    end_of_image: int


class JanusTokenizer:
    def __init__(self, model_dir: str | Path):
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.exists():
            raise CheckpointError(
                f"{path}: not found; janus-rt needs the checkpoint's tokenizer.json (copy it from the model's release)"
            )
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable tokenizers file ({e})") from None
        self.path = path
        bos_name, eos_name = BOS, EOS
        # transformers' LlamaTokenizerFast (the reference's tokenizer class) does not clean up spaces unless told to
        self.clean_up_spaces = False
        cfg_path = model_dir / "tokenizer_config.json"
        if cfg_path.exists():  # names and flags only; ids always come from tokenizer.json
            raw = read_json(cfg_path)
            bos_name = _token_name(raw.get("bos_token")) or BOS
            eos_name = _token_name(raw.get("eos_token")) or EOS
            self.clean_up_spaces = bool(raw.get("clean_up_tokenization_spaces", False))
        self.special = SpecialIds(
            bos=self._require(bos_name),
            eos=self._require(eos_name),
            pad=self._require(PAD),
            image_placeholder=self._require(IMAGE_PLACEHOLDER),
            begin_of_image=self._require(BEGIN_OF_IMAGE),
            end_of_image=self._require(END_OF_IMAGE),
        )
        self.has_pro_roles = self.token_id(PRO_USER) is not None and self.token_id(PRO_ASSISTANT) is not None

    def token_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def _require(self, token: str) -> int:
        tid = self.token_id(token)
        if tid is None:
            raise CheckpointError(f"{self.path}: has no token {token!r}, which Janus prompts need")
        return tid

    @cached_property
    def max_token_bytes(self) -> int | None:
        """Most UTF-8 bytes of text one token stands for (the longest entry of the vocabulary, added tokens included),
        so a text of B bytes is at least B / max_token_bytes tokens: a bound known before tokenizing. None where an
        unknown-word token can swallow any run of text (a model with an `unk` token and no byte fallback)."""
        model = self._tok.model
        if getattr(model, "unk_token", None) and not getattr(model, "byte_fallback", False):
            return None
        return max((len(token.encode("utf-8")) for token in self._tok.get_vocab(with_added_tokens=True)), default=None)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` with exactly one leading BOS and no EOS."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if not ids or ids[0] != self.special.bos:
            ids = [self.special.bos] + ids
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text of `ids` with special tokens skipped (and spaces cleaned up when tokenizer_config asks for it)."""
        text = self._tok.decode(ids, skip_special_tokens=True)
        return clean_up_tokenization(text) if self.clean_up_spaces else text


def clean_up_tokenization(text: str) -> str:
    """transformers' `clean_up_tokenization`: drop the space before punctuation and English contractions."""
    for spaced, joined in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                           (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(spaced, joined)
    return text


def _token_name(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None

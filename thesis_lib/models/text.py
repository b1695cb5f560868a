"""The plot encoder: a BERT-family transformer from Hugging Face transformers.

Tokens are the last layer's hidden states over the word pieces (padding masked out; how attention skips
the padding, and where it runs padding-free, is `text_attention`'s docstring); the pooled vector is
the first token ([CLS] for BERT, <s> for RoBERTa), as BERT classifiers use it, or a mean over the real
tokens. The NSP-trained pooler layer of `BertModel` is dropped: it is not used, and an unused parameter
would get no gradient (which DDP and our gradient-flow tests both object to).

Backbones:
- any Hugging Face name (`bert-base-uncased`, `roberta-base`): weights from the local pretrained folder or
  the HF cache (`thesis_lib.models.pretrained`);
- `minilm`: the packaged all-MiniLM-L6-v2 (a real pretrained 6-layer BERT, 384 wide), fully offline;
- `random-bert-small` / `random-roberta-small`: 2 layers, 128 wide, random init, for a tokenizer trained
  locally on the plots; their vocabulary size and padding id come from the config and must match it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from torch import Tensor
from transformers import AutoConfig, AutoModel, BertConfig, PreTrainedModel, PreTrainedTokenizerBase, RobertaConfig

from thesis_lib.data.tokenizers import load_pretrained_tokenizer, minilm_dir
from thesis_lib.models.configs import TextEncoderConfig
from thesis_lib.models.encoder import Encoder
from thesis_lib.models.outputs import EncoderOutput, masked_mean
from thesis_lib.models.pretrained import MissingWeightsError, hf_source, missing_weights_hint
from thesis_lib.models.text_attention import (
    VARLEN_ATTENTION,
    can_pack,
    compute_dtype,
    key_padding_mask,
    run_packed,
    varlen_kernel_runs,
)
from thesis_lib.offline import is_online

# Randomly initialised small backbones: (config class, padding id of the matching tokenizer family, widths).
_SMALL_WIDTHS = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
RANDOM_TEXT_BACKBONES: dict[str, tuple[type, int]] = {
    "random-bert-small": (BertConfig, 0),  # [PAD] = 0 in a WordPiece vocabulary
    "random-roberta-small": (RobertaConfig, 1),  # <s>=0, <pad>=1, </s>=2 in a RoBERTa BPE vocabulary
}
_MAX_POSITIONS = 512  # BERT's limit; random backbones get the same so max_length means the same everywhere


class TextEncoder(Encoder):
    """Plot token ids -> contextual token features, padding mask and a pooled plot vector."""

    modality = "text"
    input_keys = ("input_ids", "attention_mask")

    def __init__(self, backbone: PreTrainedModel, config: TextEncoderConfig):
        width = backbone.config.hidden_size
        super().__init__(token_dim=width, pooled_dim=width)
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None  # the NSP pooler is unused: pooled = first token or mean (see module doc)
        self.backbone = backbone
        self.config = config
        self.vocab_size = backbone.config.vocab_size
        self.pad_token_id = backbone.config.pad_token_id
        self.max_length = min(config.max_length, _positions_available(backbone))
        # "auto": padding-free attention where its kernel runs (see text_attention); "always" forces the packed
        # layout (on a CPU with a stand-in for the kernel: for tests); "never" keeps the padded batch.
        self.padding_free: Literal["auto", "always", "never"] = "auto"
        self.set_frozen(config.frozen)

    @classmethod
    def from_config(cls, config: TextEncoderConfig) -> TextEncoder:
        return cls(load_text_backbone(config), config)

    def forward(self, batch: Mapping[str, Any]) -> EncoderOutput:
        self._require_keys(batch)
        input_ids: Tensor = batch["input_ids"]  # (B, L) int64
        attention_mask: Tensor = batch["attention_mask"]  # (B, L) 1 = real token, 0 = padding
        self._check_shapes(input_ids, attention_mask)  # shapes only; ids are checked once per pass (check_input)
        mask = attention_mask.bool()  # (B, L)
        attentions = None
        if self._packs(batch, input_ids):
            tokens = run_packed(self.backbone, input_ids, mask, batch["text_index"])  # (B, L, D) zeros at padding
        else:
            # No padding at all (known from the index's length: a shape, no sync): no mask, so SDPA may take
            # its fastest (flash) kernel, eager and compiled alike.
            unpadded = "text_index" in batch and batch["text_index"].shape[0] == input_ids.numel()
            out = self.backbone(
                input_ids=input_ids,
                attention_mask=None if unpadded else key_padding_mask(mask, self.backbone),  # (B, 1, 1, L)
                output_attentions=self.config.need_attentions,
            )
            tokens = out.last_hidden_state  # (B, L, D)
            if self.config.need_attentions:
                attentions = tuple(out.attentions)  # L_layers x (B, H, L, L)
        pooled = tokens[:, 0] if self.config.pooling == "cls" else masked_mean(tokens, mask)  # (B, D)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled, attentions=attentions)

    def _packs(self, batch: Mapping[str, Any], input_ids: Tensor) -> bool:
        """Padding-free or padded attention (`text_attention`), from host-side facts only: no sync."""
        if self.padding_free == "never" or "text_index" not in batch or not can_pack(self.backbone, self.training):
            return False
        if self.padding_free == "always":
            return True
        return varlen_kernel_runs(input_ids.device, compute_dtype(self.backbone, input_ids.device))

    def check_input(self, batch: Mapping[str, Any]) -> None:
        # An id past the vocabulary means the tokenizer does not belong to this backbone; say so, instead
        # of an IndexError (a device-side assert on a GPU) from inside the embedding.
        self._require_keys(batch)
        input_ids: Tensor = batch["input_ids"]  # (B, L)
        self._check_shapes(input_ids, batch["attention_mask"])
        if input_ids.numel() and (int(input_ids.max()) >= self.vocab_size or int(input_ids.min()) < 0):
            raise ValueError(
                f"token ids span {int(input_ids.min())}..{int(input_ids.max())} but the {self.config.backbone} "
                f"vocabulary has {self.vocab_size} entries: was the batch tokenized for another backbone?"
            )
        if "text_index" in batch:  # the collator's index of the real tokens must be this batch's own
            mask = batch["attention_mask"].bool()  # (B, L)
            expected = mask.flatten().nonzero().squeeze(1)  # (T,)
            index = batch["text_index"]
            right_padded = bool((mask[:, 1:] <= mask[:, :-1]).all())  # no real token after padding
            if not right_padded or index.shape != expected.shape or not bool((index == expected.to(index.device)).all()):
                raise ValueError(
                    "batch['text_index'] does not list the real tokens of batch['attention_mask'] (right padding, "
                    "row-major): was the batch sliced or re-padded after collation? Drop the key to run padded"
                )

    def expected_input(self) -> list[tuple[str, str]]:
        if self.config.backbone in RANDOM_TEXT_BACKBONES:
            tokenizer = "the tokenizer trained on the plots"
        else:
            tokenizer = f"the {self.config.backbone} tokenizer"
        ids = f"int64 (B, L), L <= {self.max_length}, ids < {self.vocab_size} from {tokenizer}"
        return [
            ("input_ids", f"{ids}, padding id {self.pad_token_id}"),
            ("attention_mask", "int64 (B, L), 1 = real token, 0 = padding"),
        ]

    def _check_shapes(self, input_ids: Tensor, attention_mask: Tensor) -> None:
        if input_ids.shape != attention_mask.shape:
            raise ValueError(
                f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} differ in shape"
            )
        if input_ids.shape[1] > self.max_length:
            raise ValueError(
                f"plots of {input_ids.shape[1]} tokens exceed the text encoder's max_length {self.max_length}: "
                "tokenize with truncation to max_length"
            )


def load_text_backbone(config: TextEncoderConfig) -> PreTrainedModel:
    """The transformers model for `config.backbone` (pretrained or random), with the attention kind set."""
    # Eager attention materialises the attention matrices XAI reads; SDPA (padded, or padding-free where the
    # varlen kernel runs: text_attention) is faster but returns none.
    attention = "eager" if config.need_attentions else VARLEN_ATTENTION
    if config.backbone in RANDOM_TEXT_BACKBONES:
        config_class, default_pad = RANDOM_TEXT_BACKBONES[config.backbone]
        pad = default_pad if config.pad_token_id is None else config.pad_token_id
        # RoBERTa counts positions from padding_idx + 1, so it needs two extra position slots.
        extra_positions = 2 if config_class is RobertaConfig else 0
        hf_config = config_class(
            vocab_size=config.vocab_size,
            pad_token_id=pad,
            max_position_embeddings=_MAX_POSITIONS + extra_positions,
            **_SMALL_WIDTHS,
        )
        return AutoModel.from_config(hf_config, attn_implementation=attention)
    source = str(minilm_dir()) if config.backbone == "minilm" else hf_source(config.backbone)
    # Explicit, not only via HF_HUB_OFFLINE (read once, when huggingface_hub is first imported).
    local_only = not is_online()
    try:
        if config.pretrained:
            return AutoModel.from_pretrained(source, attn_implementation=attention, local_files_only=local_only)
        hf_config = AutoConfig.from_pretrained(source, local_files_only=local_only)
        return AutoModel.from_config(hf_config, attn_implementation=attention)
    except OSError as error:
        raise MissingWeightsError(f"text backbone {config.backbone!r}: {missing_weights_hint(config.backbone)}") from error


def load_tokenizer(config: TextEncoderConfig) -> PreTrainedTokenizerBase:
    """The pretrained tokenizer that belongs to `config.backbone`, truncating to `config.max_length`.

    Resolved like the weights (local pretrained folder, else the HF cache). random-* backbones have none:
    their tokenizer is trained on the training plots (thesis_lib.data.tokenizers), and the text config's
    vocab_size / pad_token_id must be set from it.
    """
    if config.backbone in RANDOM_TEXT_BACKBONES:
        raise ValueError(
            f"{config.backbone!r} has no pretrained tokenizer: train one on the training plots "
            "(thesis_lib.data.tokenizers) and set the text config's vocab_size and pad_token_id from it"
        )
    source = minilm_dir() if config.backbone == "minilm" else hf_source(config.backbone)
    tokenizer = load_pretrained_tokenizer(source)
    tokenizer.model_max_length = config.max_length
    return tokenizer


def _positions_available(backbone: PreTrainedModel) -> int:
    positions = backbone.config.max_position_embeddings
    # RoBERTa reserves padding_idx + 1 position slots before the first real token.
    return positions - 2 if backbone.config.model_type in {"roberta", "xlm-roberta", "camembert"} else positions

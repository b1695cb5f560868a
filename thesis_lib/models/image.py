"""The poster encoder: a timm backbone, read through timm's own `forward_features` / `forward_head`.

Tokens are the backbone's local features: for a CNN (ResNet) the cells of the last feature map (7 x 7 = 49
at 224 px), for a ViT the patch tokens after the class token. The pooled vector is timm's pre-logits
pooling of those features (global average for ResNet, the normed CLS token for ViT), so it is exactly the
vector the backbone was pretrained to classify from.

The encoder also tells the rest of the project what it needs and offers: `normalization()` (the mean/std
the backbone was trained with, for the data transforms), `gradcam_stages()`, `gradcam_target_layers(stage)` and
`gradcam_reshape_transform()` (for pytorch-grad-cam), and per-block ViT attention maps when asked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import timm
import torch
from huggingface_hub import try_to_load_from_cache
from timm.data import resolve_model_data_config
from timm.models import get_pretrained_cfg, is_model_in_modules
from timm.models.resnet import ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from thesis_lib.data.images import NormalizationStats
from thesis_lib.models.configs import ImageEncoderConfig, allowed_timm_kwargs
from thesis_lib.models.encoder import Encoder
from thesis_lib.models.outputs import EncoderOutput
from thesis_lib.models.pretrained import (
    MissingWeightsError,
    check_backbone_name,
    missing_weights_hint,
    timm_weights_file,
)
from thesis_lib.offline import is_online

_VIT_MODULES = ["vision_transformer", "deit"]  # timm modules whose models take img_size / depth


class ImageEncoder(Encoder):
    """Poster pixels -> local features (grid cells or patches), their mask (all real), a pooled vector."""

    modality = "image"
    input_keys = ("image",)

    def __init__(self, backbone: nn.Module, config: ImageEncoderConfig):
        width = backbone.num_features
        super().__init__(token_dim=width, pooled_dim=width)
        self.backbone = backbone
        self.config = config
        self.is_vit = isinstance(backbone, VisionTransformer)
        self._attention_maps: list[Tensor] = []
        if config.need_attentions:
            self._capture_vit_attention()
        self.set_frozen(config.frozen)

    @classmethod
    def from_config(cls, config: ImageEncoderConfig) -> ImageEncoder:
        return cls(load_image_backbone(config), config)

    def forward(self, batch: Mapping[str, Any]) -> EncoderOutput:
        self._require_keys(batch)
        images: Tensor = batch["image"]  # (B, 3, S, S) normalised with self.normalization()
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"batch['image'] must be (B, 3, H, W); got {tuple(images.shape)}")
        size = self.config.input_size
        if self.is_vit and tuple(images.shape[-2:]) != (size, size):
            raise ValueError(
                f"{self.config.backbone} was built for {size} x {size} posters (ImageEncoderConfig.input_size); "
                f"got {images.shape[-2]} x {images.shape[-1]}: resize in the transform or set input_size"
            )
        self._attention_maps.clear()
        features = self.backbone.forward_features(images)  # CNN (B, D, h, w) | ViT (B, P + h*w, D)
        pooled = self.backbone.forward_head(features, pre_logits=True)  # (B, D)
        if features.dim() == 4:
            tokens = features.flatten(2).transpose(1, 2)  # (B, h*w, D) one token per feature-map cell
        else:
            tokens = features  # (B, P + h*w, D) prefix (CLS) token(s), then patches in raster order
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)  # (B, N) posters have no padding
        attentions = tuple(self._attention_maps) if self.config.need_attentions else None  # blocks x (B, H, N, N)
        self._attention_maps.clear()
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled, attentions=attentions)

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches (1 for a ViT's CLS token, 0 for a CNN grid)."""
        return getattr(self.backbone, "num_prefix_tokens", 0) if self.is_vit else 0

    def normalization(self) -> NormalizationStats:
        """The per-channel mean/std the backbone expects (ImageNet for ResNet, 0.5/0.5 for timm's ViT-B)."""
        data_config = resolve_model_data_config(self.backbone)
        return NormalizationStats(mean=tuple(data_config["mean"]), std=tuple(data_config["std"]))

    def expected_input(self) -> list[tuple[str, str]]:
        stats = self.normalization()
        size = self.config.input_size
        return [("image", f"float32 (B, 3, {size}, {size}), normalised with mean {stats.mean} std {stats.std}")]

    def gradcam_stages(self) -> tuple[str, ...]:
        """The backbone stages Grad-CAM can read, last (coarsest) first: ResNet ("layer4", ..., "layer1"),
        ConvNeXt-style ("stages.3", ..., "stages.0"); a ViT has one grid (its patches) at every block: ()."""
        if self.is_vit:
            return ()
        if isinstance(self.backbone, ResNet):
            return ("layer4", "layer3", "layer2", "layer1")
        if hasattr(self.backbone, "stages"):  # ConvNeXt, EfficientNet-style timm CNNs
            return tuple(f"stages.{i}" for i in reversed(range(len(self.backbone.stages))))
        raise NotImplementedError(f"no Grad-CAM target layer known for timm backbone {self.config.backbone!r}")

    def gradcam_target_layers(self, stage: str | None = None) -> list[nn.Module]:
        """Where Grad-CAM should read activations: a CNN's `stage` (one of `gradcam_stages()`, None: the last,
        e.g. ResNet `layer4`); a ViT's `blocks[-1].norm1` whatever `stage` says.

        A CNN's stages halve the resolution one after another: a ResNet at 128 px gives layer4 a 4 x 4 grid,
        layer3 8 x 8, layer2 16 x 16 (a map can only localise what its cells resolve; the gradient of an
        earlier stage still flows through every later one, so the map explains the same logit).
        For a ViT the last block's *input* (after its first norm) is used, not the block's output: the
        class token is read from the final norm, so the patch tokens of the last output get no gradient.
        Its grid is the patch grid (input size / patch size per side) at every block.
        """
        if self.is_vit:
            return [self.backbone.blocks[-1].norm1]
        stages = self.gradcam_stages()
        stage = stages[0] if stage is None else stage
        if stage not in stages:
            raise ValueError(f"Grad-CAM stage {stage!r}: {self.config.backbone!r} has the stages {list(stages)}")
        return [self.backbone.get_submodule(stage)]

    def gradcam_reshape_transform(self) -> Callable[[Tensor], Tensor] | None:
        """For a ViT: tokens (B, P + h*w, D) -> feature map (B, D, h, w), as pytorch-grad-cam expects."""
        if not self.is_vit:
            return None
        prefix = self.num_prefix_tokens

        def tokens_to_map(tokens: Tensor) -> Tensor:
            patches = tokens[:, prefix:]  # (B, h*w, D)
            side = math.isqrt(patches.shape[1])
            if side * side != patches.shape[1]:
                raise ValueError(f"{patches.shape[1]} ViT patches do not form a square grid")
            return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], side, side)  # (B, D, h, w)

        return tokens_to_map

    def _capture_vit_attention(self) -> None:
        if not self.is_vit:
            raise ValueError(
                f"need_attentions: {self.config.backbone!r} is a CNN and has no attention maps (use Grad-CAM)"
            )
        for block in self.backbone.blocks:
            # timm computes the attention matrix only on its unfused path; the softmax output is the
            # input of attn_drop, so a hook there reads it before any dropout.
            block.attn.fused_attn = False
            block.attn.attn_drop.register_forward_hook(self._store_attention)

    def _store_attention(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self._attention_maps.append(inputs[0])  # (B, H, N, N), rows sum to 1


def load_image_backbone(config: ImageEncoderConfig) -> nn.Module:
    """The timm model for `config.backbone` without its classifier (num_classes=0), weights as configured."""
    kwargs: dict[str, Any] = allowed_timm_kwargs(config.timm_kwargs)  # never a file to open (see configs)
    is_vit = is_model_in_modules(check_backbone_name(config.backbone), _VIT_MODULES)
    if is_vit:
        kwargs["img_size"] = config.input_size
        if config.depth is not None:
            kwargs["depth"] = config.depth
    elif config.depth is not None:
        raise ValueError(f"image depth={config.depth}: only ViT backbones take a depth, not {config.backbone!r}")
    if config.pretrained:
        if (weights := timm_weights_file(config.backbone)) is not None:
            kwargs["pretrained_cfg_overlay"] = dict(file=str(weights))  # a local file instead of the HF hub
        else:
            _fail_fast_if_not_cached(config.backbone)
    try:
        return timm.create_model(config.backbone, pretrained=config.pretrained, num_classes=0, **kwargs)
    except OSError as error:  # huggingface_hub's "not in the local cache" when offline
        raise MissingWeightsError(f"image backbone {config.backbone!r}: {missing_weights_hint(config.backbone)}") from error


def _fail_fast_if_not_cached(name: str) -> None:
    """Offline, refuse at once when timm would have to download the weights from the HF hub.

    huggingface_hub reads its offline switch when it is first imported, which may happen before
    `import thesis_lib` sets it (e.g. `import timm` first); it would then retry the network for minutes.
    """
    if is_online():
        return
    pretrained_cfg = get_pretrained_cfg(name)
    if pretrained_cfg is None or pretrained_cfg.hf_hub_id is None:
        return  # weights from a URL or a file: timm's own cache handling applies
    filenames = [pretrained_cfg.hf_hub_filename] if pretrained_cfg.hf_hub_filename else [
        "model.safetensors", "pytorch_model.bin"  # what timm tries, in that order
    ]
    if not any(isinstance(try_to_load_from_cache(pretrained_cfg.hf_hub_id, f), str) for f in filenames):
        raise MissingWeightsError(f"image backbone {name!r}: {missing_weights_hint(name)}")

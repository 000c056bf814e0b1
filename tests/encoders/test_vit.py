import pytest
import torch

from zoo.encoders.vit import ViTEncoder
from zoo.nn.tokens import sincos_2d

TINY = {"img_size": 28, "patch_size": 4, "in_chans": 1, "embed_dim": 32, "depth": 1, "num_heads": 2}


def test_patch_tokens_without_cls_on_a_7x7_grid():
    encoder = ViTEncoder(TINY)
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert encoder.grid_size == (7, 7)
    assert encoder(images).shape == (3, 49, 32)
    assert encoder.backbone.cls_token is None and encoder.backbone.pos_embed is None
    assert "pos_embed" not in encoder.state_dict()  # fixed, derived from the config


def test_224_with_patch_16_is_a_14x14_grid():
    encoder = ViTEncoder({**TINY, "img_size": 224, "patch_size": 16, "in_chans": 3})
    assert encoder(torch.rand(1, 3, 224, 224)).shape == (1, 196, 32)


def test_keep_runs_the_blocks_on_the_kept_patches_only():
    torch.manual_seed(0)
    encoder = ViTEncoder(TINY).eval()
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    keep = torch.tensor([[0, 5, 48], [1, 2, 3]])
    out = encoder(images, keep)
    tokens = encoder.patch_tokens(images)
    manual = encoder.backbone.norm(encoder.backbone.blocks(torch.stack([tokens[0, [0, 5, 48]], tokens[1, [1, 2, 3]]])))
    torch.testing.assert_close(out, manual)


def test_uint8_and_unit_float_inputs_agree():
    encoder = ViTEncoder(TINY)
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    torch.testing.assert_close(encoder(images), encoder(images.float() / 255))


def test_positions_are_the_release_layout_unless_told_otherwise():
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    encoder = ViTEncoder(TINY)
    assert encoder.pos_embed_order == "xy" and torch.equal(encoder.pos_embed[0], sincos_2d((7, 7), 32, "xy"))
    transposed = ViTEncoder(TINY, pos_embed_order="yx")
    transposed.load_state_dict(encoder.state_dict())
    assert not torch.allclose(transposed(images), encoder(images))  # the layout matters to trained weights
    transposed.set_pos_embed_order("xy")
    assert torch.equal(transposed(images), encoder(images))


@pytest.mark.parametrize(
    "bad, message",
    [({"patch_size": 5}, "patch_size=5"), ({"num_heads": 3}, "num_heads=3"), ({"model_kwargs": {"class_token": True}}, "class_token"), ({"nme": 1}, "nme")],
)
def test_bad_config_is_one_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        ViTEncoder({**TINY, **bad})


def test_wrong_image_size_is_one_clear_error():
    with pytest.raises(ValueError, match="28×28"):
        ViTEncoder(TINY)(torch.rand(1, 1, 32, 32))

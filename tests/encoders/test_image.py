import pytest
import torch

from zoo.encoders.image import ImageEncoder


def test_small_image_stem_keeps_resolution(tiny_encoder):
    small = ImageEncoder(tiny_encoder)
    default = ImageEncoder({**tiny_encoder, "small_image_stem": False})
    conv1 = small.backbone.conv1
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1)
    assert isinstance(small.backbone.maxpool, torch.nn.Identity)
    assert default.backbone.conv1.stride == (2, 2)
    # the 3×3 stride-1 stem keeps 8× more spatial positions into layer1 (no stride-2 conv, no max-pool)
    x = torch.rand(2, 1, 32, 32)
    feats = {}
    for name, enc in (("small", small), ("default", default)):
        enc.backbone.layer1.register_forward_hook(lambda m, i, o, name=name: feats.__setitem__(name, o.shape[-1]))
        assert enc(x).shape == (2, 64)
    assert feats == {"small": 32, "default": 8}


def test_stem_pool_false_keeps_the_strided_conv_and_drops_the_max_pool(tiny_encoder):
    no_pool = ImageEncoder({**tiny_encoder, "small_image_stem": False, "stem_pool": False})
    assert no_pool.backbone.conv1.stride == (2, 2) and no_pool.backbone.conv1.kernel_size == (7, 7)
    assert isinstance(no_pool.backbone.maxpool, torch.nn.Identity)
    feats = {}
    no_pool.backbone.layer1.register_forward_hook(lambda m, i, o: feats.__setitem__("layer1", o.shape[-1]))
    assert no_pool(torch.rand(2, 1, 32, 32)).shape == (2, 64)
    assert feats == {"layer1": 16}  # twice the default stem's 8
    with pytest.raises(ValueError, match=r"stem_pool: false needs a timm ResNet .*'vit_tiny_patch16_224'"):
        ImageEncoder({"name": "vit_tiny_patch16_224", "in_chans": 1, "stem_pool": False})


def test_uint8_and_float_inputs_give_the_same_embedding(tiny_encoder):
    enc = ImageEncoder({**tiny_encoder, "mean": [0.3], "std": [0.2]}).eval()
    images = torch.randint(0, 256, (3, 1, 12, 12), dtype=torch.uint8)
    expected = enc.backbone((images.float() / 255 - 0.3) / 0.2)
    torch.testing.assert_close(enc(images), expected)
    torch.testing.assert_close(enc(images.float() / 255), expected)


def test_normalisation_is_not_a_state_dict_entry(tiny_encoder):
    # mean/std come from config.json, so the weights file holds only learned tensors
    enc = ImageEncoder({**tiny_encoder, "mean": [0.3], "std": [0.2]})
    assert not any(k.endswith(("mean", "std")) and "bn" not in k and "running" not in k for k in enc.state_dict())


@pytest.mark.parametrize("shape", [(1, 12, 12), (2, 3, 12, 12), (2, 1, 1, 12, 12)])
def test_wrong_input_shape_names_the_problem(tiny_encoder, shape):
    enc = ImageEncoder(tiny_encoder)
    with pytest.raises(ValueError, match="images"):
        enc(torch.rand(shape))


def test_unknown_timm_model_is_a_clear_error():
    with pytest.raises(ValueError, match="resnet_does_not_exist"):
        ImageEncoder({"name": "resnet_does_not_exist"})


def test_bf16_training_on_a_one_pixel_wide_feature_map_is_refused_on_the_cpu(tiny_encoder):
    # torch's CPU bf16 convolution returns wrong weight gradients for a strided conv on 1-px-wide input (the guard's
    # docstring has the measurements): 4×4 crops reach layer4 at 1×1 in the small-stem ResNet
    enc = ImageEncoder(tiny_encoder)
    small = torch.rand(2, 1, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(ValueError, match=r"layer4\.0\.conv1.*32-true"):
        enc(small)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        assert enc(small).shape == (2, 64)  # inference is unaffected: only weight gradients are wrong
    assert enc(small).shape == (2, 64)  # fp32 is exact
    with torch.autocast("cpu", dtype=torch.bfloat16):
        enc(torch.rand(2, 1, 6, 6)).float().sum().backward()  # layer4's input is 2×2 there: exact
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)

"""Tests for the batched on-device image views (zoo.nn.views)."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.nn.views import (
    DEFAULT_VIEW_CONFIG,
    ImageViewConfig,
    ImageViews,
    _blur_kernel_size,
    _color_jitter,
    _sample_crop_boxes,
    view_generator,
)

# every op off, full-image crop: the view is the input itself (as float in [0, 1])
IDENTITY: ImageViewConfig = {
    "crop_scale": (1.0, 1.0),
    "crop_ratio": (1.0, 1.0),
    "flip_prob": 0.0,
    "jitter_prob": 0.0,
    "grayscale_prob": 0.0,
    "blur_prob": 0.0,
    "solarize_prob": 0.0,
}
NO_JITTER_OPS = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}
LUMA = torch.tensor([0.299, 0.587, 0.114])


def gen(*keys: int) -> torch.Generator:
    return view_generator(torch.device("cpu"), *keys)


def only(**overrides) -> ImageViews:
    """Identity views with some ops switched back on."""
    return ImageViews({**IDENTITY, **overrides})


def jitter_only(**strengths: float) -> ImageViews:
    return only(jitter_prob=1.0, **{**NO_JITTER_OPS, **strengths})


def rand_images(batch: int, channels: int, size: int = 32, lo: float = 0.0, hi: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(batch, channels, size, size, generator=g)


def uint8_images(batch: int, channels: int, height: int = 32, width: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, channels, height, width), generator=g, dtype=torch.uint8)


# ---------------------------------------------------------------------------------------------------------------------
# shapes, dtypes, determinism


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("as_float", [False, True])
@pytest.mark.parametrize("output_size", [None, 20, 48])
def test_output_shape_dtype_range(channels: int, as_float: bool, output_size: int | None) -> None:
    images = uint8_images(6, channels, height=32, width=40)  # non-square input: output side defaults to H
    if as_float:
        images = images.float() / 255
    views = ImageViews({"output_size": output_size, "blur_prob": 0.5, "solarize_prob": 0.5})
    out = views(images, gen(0))
    side = output_size or 32
    assert out.shape == (6, channels, side, side)
    assert out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert torch.isfinite(out).all()


def test_uint8_and_float_inputs_agree() -> None:
    images = uint8_images(8, 3)
    views = ImageViews({"blur_prob": 0.5, "solarize_prob": 0.3, "output_size": 24})
    torch.testing.assert_close(views(images, gen(3)), views(images.float() / 255, gen(3)), atol=1e-5, rtol=0)


def test_half_precision_input_gives_float32() -> None:
    images = uint8_images(4, 3).float().div(255).to(torch.bfloat16)
    out = ImageViews()(images, gen(0))
    assert out.dtype == torch.float32


def test_same_seed_same_views_different_seed_different_views() -> None:
    images = uint8_images(8, 3)
    views = ImageViews({"blur_prob": 0.5, "solarize_prob": 0.2})
    a = views(images, gen(1, 0, 0))
    b = views(images, gen(1, 0, 0))
    c = views(images, gen(1, 0, 1))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_parameters_are_per_sample() -> None:
    images = uint8_images(1, 3).expand(16, -1, -1, -1).contiguous()  # 16 copies of one image
    out = ImageViews()(images, gen(5))
    flat = out.flatten(1)
    distances = torch.cdist(flat, flat)
    off_diagonal = distances[~torch.eye(16, dtype=torch.bool)]
    assert (off_diagonal > 1e-3).all()  # every pair of views differs


def test_global_rng_untouched() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ImageViews({"blur_prob": 0.5, "solarize_prob": 0.5})(uint8_images(4, 3), gen(0))
    assert torch.equal(torch.rand(3), expected)


def test_autocast_computes_in_float32() -> None:
    images = uint8_images(4, 3)
    views = ImageViews({"blur_prob": 0.5})
    expected = views(images, gen(9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = views(images, gen(9))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_empty_batch() -> None:
    out = ImageViews({"output_size": 16})(uint8_images(0, 3), gen(0))
    assert out.shape == (0, 3, 16, 16) and out.dtype == torch.float32


def test_rejects_bad_images() -> None:
    views = ImageViews()
    with pytest.raises(ValueError):
        views(torch.rand(2, 4, 8, 8), gen(0))  # 4 channels
    with pytest.raises(ValueError):
        views(torch.rand(4, 8, 8), gen(0))  # no batch dim
    with pytest.raises(ValueError):
        views(torch.zeros(2, 3, 8, 8, dtype=torch.int32), gen(0))


# ---------------------------------------------------------------------------------------------------------------------
# crop and flip


@pytest.mark.parametrize("channels", [1, 3])
def test_identity_config_reproduces_input(channels: int) -> None:
    images = uint8_images(5, channels)
    out = only()(images, gen(0))
    torch.testing.assert_close(out, images.float() / 255, atol=1e-5, rtol=0)


def test_flip_only_equals_flip() -> None:
    images = uint8_images(5, 3)
    out = only(flip_prob=1.0)(images, gen(0))
    torch.testing.assert_close(out, images.flip(-1).float() / 255, atol=1e-5, rtol=0)


def test_flip_is_per_sample() -> None:
    images = uint8_images(64, 1)
    expected = images.float() / 255
    out = only(flip_prob=0.5)(images, gen(0))
    flipped = torch.isclose(out, expected.flip(-1), atol=1e-5).flatten(1).all(1)
    kept = torch.isclose(out, expected, atol=1e-5).flatten(1).all(1)
    assert (flipped ^ kept).all()  # every sample is exactly one of the two
    assert 10 < flipped.sum() < 54


def _ramp(batch: int, size: int, horizontal: bool = True) -> torch.Tensor:
    ramp = torch.arange(size, dtype=torch.float32) / (size - 1)
    image = ramp.expand(size, size) if horizontal else ramp[:, None].expand(size, size)
    return image.expand(batch, 1, size, size).contiguous()


def test_crop_of_ramp_covers_a_sub_range() -> None:
    size, out_size, batch = 32, 16, 32
    views = only(crop_scale=(0.25, 0.25), output_size=out_size)
    for horizontal in (True, False):
        out = views(_ramp(batch, size, horizontal), gen(4))
        spans = out.flatten(1).amax(1) - out.flatten(1).amin(1)
        # a box of half the side: values span (half side - one output pixel) of the ramp, in ramp units
        expected_span = (size / 2) * (1 - 1 / out_size) / (size - 1)
        torch.testing.assert_close(spans, torch.full_like(spans, expected_span), atol=1e-4, rtol=0)
        # the ramp direction survives (no flip) and the view is not the full image
        assert (out.diff(dim=-1 if horizontal else -2) >= -1e-6).all()
        assert (spans < 0.6).all()
        starts = out[:, 0, 0, 0]
        assert starts.std() > 0.05  # boxes at different offsets


def test_crop_matches_sampled_boxes_exactly() -> None:
    """The view of a ramp at output pixel j is the ramp at the box's pixel-centre coordinate (bilinear: every box is
    at most the output size here, so no antialiasing filter widens the taps)."""
    size, out_size, batch = 32, 32, 16
    config = {**IDENTITY, "crop_scale": (0.1, 0.9), "crop_ratio": (0.5, 2.0), "output_size": out_size}
    views = ImageViews(config)
    boxes = _sample_crop_boxes(batch, size, size, (0.1, 0.9), (0.5, 2.0), gen(7), torch.device("cpu"))
    out = views(_ramp(batch, size), gen(7))  # the crop boxes are the first draw of the generator
    x0, w = boxes[:, 0:1], boxes[:, 2:3]
    centres = x0 + (torch.arange(out_size) + 0.5) * w / out_size  # output pixel centres in input pixel units
    expected = (centres - 0.5).clamp(0, size - 1) / (size - 1)
    torch.testing.assert_close(out[:, 0, 0, :], expected, atol=1e-4, rtol=0)


def test_crop_boxes_lie_inside_image() -> None:
    height, width, batch = 40, 64, 4096
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    boxes = _sample_crop_boxes(batch, height, width, scale, ratio, gen(0), torch.device("cpu"))
    x0, y0, w, h = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + w <= width + 1e-3).all() and (y0 + h <= height + 1e-3).all()
    area = w * h / (height * width)
    assert (area >= scale[0] - 1e-4).all() and (area <= scale[1] + 1e-4).all()
    aspect = w / h
    assert (aspect >= ratio[0] - 1e-4).all() and (aspect <= ratio[1] + 1e-4).all()
    assert area.min() < 0.1 and area.max() > 0.55  # the whole range is used
    # offsets spread over the free room
    room = (width - w).clamp(min=1e-6)
    assert (x0 / room).std() > 0.2


def test_crop_falls_back_to_central_box() -> None:
    size = 32
    # aspect ratios 4..5 at >= 90% area never fit a square: torchvision's fallback is the widest box, centred
    boxes = _sample_crop_boxes(8, size, size, (0.9, 1.0), (4.0, 5.0), gen(0), torch.device("cpu"))
    expected = torch.tensor([0.0, (size - size / 4) / 2, size, size / 4]).expand(8, 4)
    torch.testing.assert_close(boxes, expected)


def test_crop_boxes_depend_only_on_the_crop_draws() -> None:
    """Turning other ops on must not change the crops of the same seed (fixed draw order)."""
    images = _ramp(8, 32)
    plain = only(crop_scale=(0.2, 0.6), flip_prob=0.0)(images, gen(11))
    # solarisation always on: the output must be exactly the solarised plain crop, so the crop draws are unchanged
    with_solarize = ImageViews({**IDENTITY, "crop_scale": (0.2, 0.6), "flip_prob": 0.0, "solarize_prob": 1.0})
    torch.testing.assert_close(with_solarize(images, gen(11)), torch.where(plain >= 0.5, 1.0 - plain, plain))
    # blur with a vanishing sigma is the identity on values, but still draws its random numbers
    with_blur = ImageViews({**IDENTITY, "crop_scale": (0.2, 0.6), "flip_prob": 0.0, "blur_prob": 1.0, "blur_sigma": (1e-3, 1e-3)})
    torch.testing.assert_close(with_blur(images, gen(11)), plain, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# colour


def test_brightness_scales_each_sample() -> None:
    images = rand_images(16, 3, lo=0.1, hi=0.6)  # 0.6 * 1.4 < 1: no clamping
    out = jitter_only(brightness=0.4)(images, gen(0))
    ratio = out / images
    per_sample = ratio.flatten(1)
    assert (per_sample.std(1) < 1e-5).all()  # x * f with one f per sample: ordering of pixels kept
    factors = per_sample.mean(1)
    assert (factors >= 0.6 - 1e-5).all() and (factors <= 1.4 + 1e-5).all()
    assert factors.std() > 0.05  # per-sample factors
    assert not torch.allclose(out.mean(), images.mean(), atol=1e-3)


def test_contrast_keeps_mean_of_gray_image() -> None:
    for channels in (1, 3):
        gray = rand_images(8, 1, lo=0.4, hi=0.6).expand(-1, channels, -1, -1)  # mid-range: no clamping
        out = jitter_only(contrast=0.4)(gray, gen(1))
        torch.testing.assert_close(out.mean(dim=(1, 2, 3)), gray.mean(dim=(1, 2, 3)), atol=1e-5, rtol=0)
        std_ratio = out.flatten(1).std(1) / gray.flatten(1).std(1)
        assert (std_ratio >= 0.6 - 1e-4).all() and (std_ratio <= 1.4 + 1e-4).all()
        assert std_ratio.std() > 0.05


def test_contrast_blends_with_mean_luma() -> None:
    images = rand_images(8, 3, lo=0.4, hi=0.6)
    out = jitter_only(contrast=0.4)(images, gen(2))
    mean_luma = torch.einsum("bchw,c->b", images, LUMA) / (32 * 32)
    centred_in = images - mean_luma[:, None, None, None]
    centred_out = out - mean_luma[:, None, None, None]
    factor = (centred_out.flatten(1) * centred_in.flatten(1)).sum(1) / centred_in.flatten(1).pow(2).sum(1)
    torch.testing.assert_close(centred_out, factor[:, None, None, None] * centred_in, atol=1e-5, rtol=0)


@pytest.mark.parametrize("op", ["saturation", "hue"])
def test_saturation_and_hue_leave_gray_rgb_unchanged(op: str) -> None:
    gray = rand_images(8, 1).expand(-1, 3, -1, -1)
    out = jitter_only(**{op: 0.5})(gray, gen(0))
    torch.testing.assert_close(out, gray, atol=1e-5, rtol=0)


def test_saturation_scales_distance_to_gray() -> None:
    images = rand_images(8, 3, lo=0.4, hi=0.6)
    out = jitter_only(saturation=0.4)(images, gen(0))
    luma_in = torch.einsum("bchw,c->bhw", images, LUMA)
    luma_out = torch.einsum("bchw,c->bhw", out, LUMA)
    torch.testing.assert_close(luma_out, luma_in, atol=1e-5, rtol=0)
    chroma_in = (images - luma_in[:, None]).flatten(1)
    chroma_out = (out - luma_out[:, None]).flatten(1)
    factor = chroma_out.norm(dim=1) / chroma_in.norm(dim=1)
    torch.testing.assert_close(chroma_out, factor[:, None] * chroma_in, atol=1e-5, rtol=0)
    assert (factor >= 0.6 - 1e-4).all() and (factor <= 1.4 + 1e-4).all()


def test_hue_rotates_chroma_and_keeps_luma() -> None:
    images = rand_images(8, 3, lo=0.45, hi=0.55)  # low chroma: no clamping after rotation
    out = jitter_only(hue=0.5)(images, gen(0))
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]])
    yiq_in = torch.einsum("ij,bjhw->bihw", yiq, images)
    yiq_out = torch.einsum("ij,bjhw->bihw", yiq, out)
    torch.testing.assert_close(yiq_out[:, 0], yiq_in[:, 0], atol=1e-5, rtol=0)  # luma kept
    chroma_in = yiq_in[:, 1:].pow(2).sum(1)
    chroma_out = yiq_out[:, 1:].pow(2).sum(1)
    torch.testing.assert_close(chroma_out, chroma_in, atol=1e-5, rtol=0)  # a rotation
    assert not torch.allclose(out, images, atol=1e-3)


def test_single_channel_ignores_saturation_and_hue() -> None:
    images = rand_images(8, 1)
    out = jitter_only(saturation=0.9, hue=0.5)(images, gen(0))
    torch.testing.assert_close(out, images, atol=1e-6, rtol=0)


def test_jitter_prob_selects_samples() -> None:
    images = rand_images(64, 3, lo=0.2, hi=0.6)
    out = only(jitter_prob=0.5, **{**NO_JITTER_OPS, "brightness": 0.4})(images, gen(3))
    unchanged = (out == images).flatten(1).all(1)
    assert 10 < unchanged.sum() < 54


def test_jitter_order_is_per_sample() -> None:
    """Brightness then contrast differs from contrast then brightness once clamping bites."""
    image = rand_images(1, 1, lo=0.2, hi=0.9)
    x = image.expand(2, -1, -1, -1)
    factors = torch.tensor([[2.0, 0.0, 1.0, 0.0]]).expand(2, 4)  # brightness x2, contrast 0 (flat at the mean)
    order = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]])
    out = _color_jitter(x, factors, order, torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(out[0], torch.full_like(out[0], float((2 * image).clamp(0, 1).mean())))
    torch.testing.assert_close(out[1], torch.full_like(out[1], min(1.0, 2 * float(image.mean()))))
    # and the sampled orders are permutations that vary across the batch
    params = ImageViews()._sample_params(64, 3, 32, 32, gen(0))
    assert torch.equal(params.jitter_order.sort(1).values, torch.arange(4).expand(64, 4))
    assert len({tuple(row.tolist()) for row in params.jitter_order}) > 10


def test_grayscale_gives_equal_channels() -> None:
    images = uint8_images(4, 3)
    out = only(grayscale_prob=1.0)(images, gen(0))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    expected = torch.einsum("bchw,c->bhw", images.float() / 255, LUMA)
    torch.testing.assert_close(out[:, 0], expected, atol=1e-5, rtol=0)


def test_solarize_formula() -> None:
    images = uint8_images(4, 3)
    out = only(solarize_prob=1.0)(images, gen(0))
    x = images.float() / 255
    torch.testing.assert_close(out, torch.where(x >= 0.5, 1 - x, x), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# blur


def test_blur_keeps_constant_image_constant() -> None:
    images = torch.full((4, 3, 32, 32), 0.3)
    out = only(blur_prob=1.0)(images, gen(0))
    torch.testing.assert_close(out, images, atol=1e-6, rtol=0)


def test_blur_reduces_variance_of_noise() -> None:
    images = rand_images(8, 3)
    out = only(blur_prob=1.0, blur_sigma=(1.0, 2.0))(images, gen(0))
    assert (out.flatten(1).var(1) < 0.5 * images.flatten(1).var(1)).all()
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=0.02, rtol=0)


def test_tiny_sigma_blur_is_identity_and_blur_is_per_sample() -> None:
    images = rand_images(4, 3)
    out = only(blur_prob=1.0, blur_sigma=(0.1, 0.1))(images, gen(0))
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)
    images = rand_images(64, 1)
    out = only(blur_prob=0.5, blur_sigma=(1.0, 2.0))(images, gen(1))
    blurred = (out != images).flatten(1).any(1)
    assert 10 < blurred.sum() < 54


def test_blur_matches_reference_convolution() -> None:
    """Per-sample grouped separable conv = a plain 2-D Gaussian conv per sample."""
    images = rand_images(3, 3, size=16)
    views = only(blur_prob=1.0, blur_sigma=(0.5, 2.0))
    out = views(images, gen(2))
    sigma = views._sample_params(3, 3, 16, 16, gen(2)).blur_sigma
    k = _blur_kernel_size(16)
    taps = torch.arange(k, dtype=torch.float32) - k // 2
    for b in range(3):
        g = torch.exp(-(taps**2) / (2 * sigma[b] ** 2))
        g = g / g.sum()
        kernel2d = (g[:, None] * g[None, :]).expand(3, 1, k, k)
        padded = torch.nn.functional.pad(images[b : b + 1], (k // 2,) * 4, mode="reflect")
        expected = torch.nn.functional.conv2d(padded, kernel2d, groups=3)
        torch.testing.assert_close(out[b : b + 1], expected, atol=1e-5, rtol=0)


def test_blur_kernel_size() -> None:
    assert _blur_kernel_size(224) == 23  # BYOL's 23 x 23
    assert _blur_kernel_size(96) == 11
    assert _blur_kernel_size(32) == 3
    assert _blur_kernel_size(8) == 3


# ---------------------------------------------------------------------------------------------------------------------
# config


def test_default_config_is_complete_and_applied() -> None:
    assert set(DEFAULT_VIEW_CONFIG) == set(ImageViewConfig.__annotations__)
    views = ImageViews()
    assert views.config == {**DEFAULT_VIEW_CONFIG}
    views = ImageViews({"crop_scale": [0.2, 1.0], "output_size": 16})  # YAML gives lists
    assert views.config["crop_scale"] == (0.2, 1.0)
    assert views.config["output_size"] == 16
    assert views.config["flip_prob"] == DEFAULT_VIEW_CONFIG["flip_prob"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("bogus", 1),
        ("flip_prob", 1.5),
        ("jitter_prob", -0.1),
        ("grayscale_prob", 2),
        ("blur_prob", float("nan")),
        ("solarize_prob", "0.5"),
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.6, 0.2)),
        ("crop_scale", (0.5, 1.2)),
        ("crop_scale", (0.5,)),
        ("crop_ratio", (2.0, 1.0)),
        ("crop_ratio", (0.0, 1.0)),
        ("brightness", -0.1),
        ("contrast", -1),
        ("saturation", -0.5),
        ("hue", 0.6),
        ("hue", -0.1),
        ("output_size", 0),
        ("output_size", 2.5),
        ("blur_sigma", (0.0, 1.0)),
        ("blur_sigma", (2.0, 1.0)),
    ],
)
def test_invalid_config_raises_naming_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        ImageViews({key: value})  # type: ignore[misc]


def test_config_parses_with_jsonargparse() -> None:
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--views", type=ImageViewConfig)
    args = parser.parse_args(["--views", '{"crop_scale": [0.2, 1.0], "flip_prob": 0.5, "output_size": 24}'])
    views = ImageViews(args.views)
    assert views.config["crop_scale"] == (0.2, 1.0) and views.config["output_size"] == 24


# ---------------------------------------------------------------------------------------------------------------------
# seeding


def test_view_generator_is_deterministic_and_key_sensitive() -> None:
    def draw(*keys: int) -> torch.Tensor:
        return torch.rand(8, generator=gen(*keys))

    assert torch.equal(draw(1, 2, 3), draw(1, 2, 3))
    distinct = [(), (0,), (1,), (1, 0), (0, 1), (2**32,), (1, 2, 3), (1, 2, 4), (3, 2, 1), (2**64 - 1,)]
    draws = [draw(*keys) for keys in distinct]
    for i in range(len(draws)):
        for j in range(i + 1, len(draws)):
            assert not torch.equal(draws[i], draws[j]), (distinct[i], distinct[j])
    assert gen(1).device.type == "cpu"


@pytest.mark.parametrize("key", [-1, 2**64, 1.5, "3", True])
def test_view_generator_rejects_bad_keys(key: object) -> None:
    with pytest.raises(ValueError):
        view_generator("cpu", 0, key)  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_views() -> None:
    images = uint8_images(8, 3).cuda()
    views = ImageViews({"blur_prob": 0.5, "solarize_prob": 0.2, "output_size": 24})
    a = views(images, view_generator(images.device, 0, 1))
    b = views(images, view_generator(images.device, 0, 1))
    assert a.device.type == "cuda" and a.shape == (8, 3, 24, 24) and a.dtype == torch.float32
    assert torch.equal(a, b)
    with torch.autocast("cuda", dtype=torch.float16):
        c = views(images, view_generator(images.device, 0, 1))
    assert c.dtype == torch.float32
    torch.testing.assert_close(c, a, atol=1e-5, rtol=0)
    identity = only()(images, view_generator(images.device, 0))
    torch.testing.assert_close(identity, images.float() / 255, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="generator"):
        views(images, gen(0))  # CPU generator for CUDA images
    assert math.isfinite(float(a.sum()))
    # no host-device synchronisation once the per-device colour constants exist
    torch.cuda.set_sync_debug_mode("error")
    try:
        views(images, view_generator(images.device, 0, 2))
        views(images[:, :1], view_generator(images.device, 0, 3))
    finally:
        torch.cuda.set_sync_debug_mode("default")

"""Image files: decoding every format/mode, padded collation, sources, bad files, the datamodule's order and resume,
crops inside the valid area with torchvision's RandomResizedCrop law, antialiasing, and IDX parity."""

from __future__ import annotations

import gzip
import io
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from tests.conftest import TINY_ENCODER
from tests.method_cases import CASES, TINY_VIT, with_inputs
from zoo.data.base import DataError
from zoo.data.image_files import BadSample, ImageFilesDataModule, collate_images, decode_image, read_file_list
from zoo.data.images import ImageDataModule, write_idx
from zoo.nn.views import ImageViews, _resized_crop_flip, _sample_crop_boxes


def photo(h: int = 12, w: int = 16, seed: int = 0) -> Image.Image:
    """A small RGB image with structure (gradients + noise), so that orientation and channel errors show."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), rng.integers(0, 256, (h, w))], -1)
    return Image.fromarray(arr.astype(np.uint8))


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def as_hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


# ---------------------------------------------------------------------------------------------------------------------
# decoding


@pytest.mark.parametrize(
    "fmt, mode, kwargs",
    [("PNG", "RGB", {}), ("WEBP", "RGB", {"lossless": True}), ("BMP", "RGB", {}), ("TIFF", "RGB", {}),
     ("PNG", "P", {}), ("GIF", "P", {}), ("PNG", "L", {}), ("TIFF", "L", {}), ("JPEG", "CMYK", {"quality": 95})],
)  # fmt: skip
def test_lossless_formats_and_modes_decode_to_pillows_rgb(fmt: str, mode: str, kwargs: dict) -> None:
    data = encode(photo().convert(mode), fmt, **kwargs)
    out = decode_image(data, source="x")
    assert out.dtype == torch.uint8 and out.shape == (3, 12, 16)
    np.testing.assert_array_equal(as_hwc(out), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_jpeg_grayscale_jpeg_and_bounded_size() -> None:
    img = photo(60, 90)
    data = encode(img, "JPEG", quality=95)
    out = decode_image(data, source="x")  # torchvision's libjpeg-turbo, Pillow's as the reference
    assert np.abs(as_hwc(out).astype(int) - np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))).max() <= 1
    gray = decode_image(encode(img.convert("L"), "JPEG"), source="x")
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all()
    small = decode_image(encode(img, "PNG"), source="x", max_side=30)
    assert small.shape == (3, 20, 30)  # longer side bounded, aspect kept
    reference = F.interpolate(torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float(), size=(20, 30), mode="bilinear", antialias=True)
    assert (small.float() - reference[0]).abs().max() <= 1.0  # antialiased, not subsampled
    assert decode_image(encode(img, "PNG"), source="x", max_side=500).shape == (3, 60, 90)


def test_rgba_is_composited_on_white_and_16_bit_is_rounded() -> None:
    arr = np.asarray(photo().convert("RGBA")).copy()
    arr[..., 3] = np.arange(16, dtype=np.uint8)[None, :] * 17  # alpha 0..255 across columns
    for fmt, kwargs in (("PNG", {}), ("WEBP", {"lossless": True}), ("TIFF", {})):
        out = decode_image(encode(Image.fromarray(arr), fmt, **kwargs), source="x").numpy().astype(int)
        rgb, alpha = arr[..., :3].astype(int), arr[..., 3:].astype(int)
        expected = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
        np.testing.assert_array_equal(out.transpose(1, 2, 0), expected)
    assert (decode_image(encode(Image.fromarray(arr), "PNG"), source="x")[:, :, 0] == 255).all()  # alpha 0: white
    values = ((np.arange(12 * 16).reshape(12, 16) * 341) % 65536).astype(np.uint16)
    for fmt in ("PNG", "TIFF"):
        out = decode_image(encode(Image.fromarray(values), fmt), source="x")
        np.testing.assert_array_equal(out[0].numpy(), np.round(values / 257).astype(np.uint8))


def test_exif_orientation_and_gif_first_frame() -> None:
    img = photo()
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    for fmt in ("JPEG", "PNG", "WEBP"):
        data = encode(img, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}))
        out = decode_image(data, source="x")
        expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
        assert out.shape == (3, 16, 12)
        assert np.abs(as_hwc(out).astype(int) - expected).max() <= 2
    frames = [Image.new("RGB", (8, 6), (255, 0, 0)), Image.new("RGB", (8, 6), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buf.getvalue(), source="anim.gif")
    assert out.shape == (3, 6, 8) and (out[0] == 255).all() and (out[2] == 0).all()


def test_luma_channel_is_exact_for_gray_files() -> None:
    gray = photo().convert("L")
    out = decode_image(encode(gray, "PNG"), source="x", channels=1)
    assert out.shape == (1, 12, 16)
    np.testing.assert_array_equal(out[0].numpy(), np.asarray(gray))


@pytest.mark.parametrize(
    "data, reason",
    [(b"", "empty file (0 bytes)"), (b"hello, world", "not an image"),
     (encode(photo(40, 40), "JPEG")[:300], "truncated or corrupt JPEG"),
     (encode(photo(40, 40), "PNG")[:200], "truncated or corrupt PNG"),
     (encode(photo(40, 40), "BMP")[:500], "truncated or corrupt image")],
)  # fmt: skip
def test_bad_data_raises_one_line_naming_the_source(data: bytes, reason: str) -> None:
    with pytest.raises(DataError) as info:
        decode_image(data, source="/photos/cat.jpg")
    message = str(info.value)
    assert message.startswith("/photos/cat.jpg: ") and reason in message and "\n" not in message


# ---------------------------------------------------------------------------------------------------------------------
# collation and views on padded batches


def test_collate_pads_bottom_right_and_records_sizes() -> None:
    a, b = torch.full((3, 4, 7), 9, dtype=torch.uint8), torch.full((3, 6, 5), 7, dtype=torch.uint8)
    batch = collate_images([{"image": a, "label": 2, "index": 10}, BadSample("/x/bad.png", "not an image", 3), {"image": b, "index": 11}])
    assert batch["image"].shape == (2, 3, 6, 7) and batch["image"].dtype == torch.uint8
    assert batch["image_size"].tolist() == [[4, 7], [6, 5]]
    assert batch["label"].tolist() == [2, -1] and batch["index"].tolist() == [10, 11]
    assert batch["skipped"] == ["/x/bad.png: not an image"]
    assert (batch["image"][0, :, :4, :7] == 9).all() and (batch["image"][0, :, 4:] == 0).all()
    assert (batch["image"][1, :, :, :5] == 7).all() and (batch["image"][1, :, :, 5:] == 0).all()


def test_views_never_read_the_padding() -> None:
    g = torch.Generator().manual_seed(0)
    sizes = torch.stack([torch.randint(3, 41, (64,), generator=g), torch.randint(3, 33, (64,), generator=g)], 1)
    images = torch.full((64, 3, 40, 32), 255, dtype=torch.uint8)
    for i, (h, w) in enumerate(sizes.tolist()):
        images[i, :, :h, :w] = 0  # black images in white padding
    views = ImageViews({"output_size": 16, "jitter_prob": 0.0, "grayscale_prob": 0.0, "crop_scale": (0.08, 1.0)})
    out = views(images, torch.Generator().manual_seed(1), sizes)
    assert out.shape == (64, 3, 16, 16) and out.max() == 0
    with pytest.raises(ValueError, match="output_size"):
        ImageViews()(images, torch.Generator().manual_seed(1), sizes)


def test_crop_area_and_aspect_follow_torchvision_random_resized_crop() -> None:
    """Boxes drawn inside each image's valid area (a padded batch of differently sized images, stored at a bounded
    size) have the area-fraction and aspect distribution of torchvision's RandomResizedCrop on the original images."""
    from scipy.stats import ks_2samp
    from torchvision.transforms import RandomResizedCrop

    originals = [(375, 500), (500, 333), (120, 480), (224, 224)]  # (h, w); 120×480 makes the fallback frequent
    stored = torch.tensor([[round(h * 256 / max(h, w)), round(w * 256 / max(h, w))] for h, w in originals])
    draws = 1500
    sizes = stored.repeat(draws, 1)
    boxes = _sample_crop_boxes(len(sizes), sizes[:, 0], sizes[:, 1], (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0), torch.device("cpu"))
    ours_area = (boxes[:, 2] * boxes[:, 3] / (sizes[:, 0] * sizes[:, 1])).numpy()
    ours_aspect = np.log((boxes[:, 2] / boxes[:, 3]).numpy())
    assert (boxes[:, 0] + boxes[:, 2] <= sizes[:, 1] + 1e-3).all() and (boxes[:, 1] + boxes[:, 3] <= sizes[:, 0] + 1e-3).all()
    torch.manual_seed(0)
    tv = np.array([RandomResizedCrop.get_params(torch.empty(1, h, w), [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(draws) for h, w in originals])
    hw = np.array(originals * draws)
    tv_area, tv_aspect = tv[:, 2] * tv[:, 3] / (hw[:, 0] * hw[:, 1]), np.log(tv[:, 3] / tv[:, 2])
    for ours, theirs in ((ours_area, tv_area), (ours_aspect, tv_aspect)):
        # rounded: the fallback box is a point mass (area 1/3 of 120×480) that float32 vs float64 would split
        ours, theirs = np.round(ours.astype(np.float64), 4), np.round(theirs.astype(np.float64), 4)
        result = ks_2samp(ours, theirs)
        assert result.statistic < 0.03 and result.pvalue > 1e-3, result
        hist_ours, edges = np.histogram(ours, bins=10)
        hist_tv, _ = np.histogram(theirs, bins=edges)
        assert np.abs(hist_ours - hist_tv).max() < 0.1 * len(ours) / 10 + 60
    # the comparison has power: a narrower scale range is rejected
    narrow = _sample_crop_boxes(len(sizes), sizes[:, 0], sizes[:, 1], (0.15, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert ks_2samp((narrow[:, 2] * narrow[:, 3] / (sizes[:, 0] * sizes[:, 1])).numpy(), tv_area).pvalue < 1e-6


def test_downscaled_crops_are_antialiased() -> None:
    """A 0.4 cycle/px grating resized 224 → 96: bilinear sampling aliases it into a strong false pattern; the
    antialiased resampling matches torch's antialiased resize."""
    x = torch.arange(224, dtype=torch.float32)
    grating = (0.5 + 0.5 * torch.cos(2 * torch.pi * 0.4 * x)).expand(1, 1, 224, 224).contiguous()
    out = _resized_crop_flip(grating, torch.tensor([[0.0, 0.0, 224.0, 224.0]]), torch.tensor([False]), 96)
    reference = F.interpolate(grating, size=(96, 96), mode="bilinear", antialias=True)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)
    plain = F.interpolate(grating, size=(96, 96), mode="bilinear", antialias=False)
    assert out.std() < 0.03 < 0.1 < plain.std()


@pytest.mark.parametrize("name", ["simclr", "byol", "swav", "ijepa", "dmt_jepa"])
def test_image_methods_train_on_padded_batches_of_mixed_sizes(name: str) -> None:
    resnet = {**TINY_ENCODER, "in_chans": 3, "small_image_stem": False}  # the strided stem: cheap at 8 px
    rgb = resnet if name in ("simclr", "byol", "swav") else {**TINY_VIT, "in_chans": 3}
    size = {"simclr": {"views": {"output_size": 8}}, "byol": {"view1": {"output_size": 8}, "view2": {"output_size": 8}},
            "swav": {}, "ijepa": {"view": {"output_size": 8}}, "dmt_jepa": {"view": {"output_size": 8}}}[name]  # fmt: skip
    model = CASES[name].build(encoder=rgb, **size)
    g = torch.Generator().manual_seed(0)
    samples = [{"image": torch.randint(0, 256, (3, int(h), int(w)), dtype=torch.uint8, generator=g), "index": i}
               for i, (h, w) in enumerate(torch.randint(5, 20, (4, 2), generator=g).tolist())]  # fmt: skip
    batch = with_inputs(model, collate_images(samples))
    assert all(v.shape[0] == 4 and v.shape[-1] == v.shape[-2] for v in batch["views"])
    out = model.ssl_step(batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()


# ---------------------------------------------------------------------------------------------------------------------
# sources and the datamodule


def make_tree(root: Path, classes: dict[str, int], size: tuple[int, int] | None = None) -> None:
    formats = [("jpg", "JPEG", "RGB"), ("png", "PNG", "RGBA"), ("webp", "WEBP", "RGB"), ("bmp", "BMP", "RGB"), ("gif", "GIF", "P"), ("tif", "TIFF", "L")]
    k = 0
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            h, w = size or (8 + 3 * (k % 5), 10 + 2 * (k % 7))
            ext, fmt, mode = formats[k % len(formats)]
            photo(h, w, seed=k).convert(mode).save(root / name / f"{i:03d}.{ext}", fmt)
            k += 1


def test_class_folders_flat_folders_and_lists(tmp_path: Path) -> None:
    make_tree(tmp_path / "tree", {"zebra": 3, "ant": 2})
    (tmp_path / "tree" / "ant" / "readme.txt").write_text("x")
    with pytest.warns(UserWarning, match="ignored 1 non-image file"):
        dm = ImageFilesDataModule(root=str(tmp_path / "tree"), batch_size=2, knn_bank_size=0, eval_size=8)
        dm.setup()
    assert dm.class_names == ["ant", "zebra"] and dm.num_classes == 2
    paths, labels = dm.files("train")
    assert sorted(zip(labels.tolist(), [Path(p).name for p in paths])) == [(0, "000.bmp"), (0, "001.gif"), (1, "000.jpg"), (1, "001.png"), (1, "002.webp")]
    flat = ImageFilesDataModule(root=str(tmp_path / "tree" / "zebra"), batch_size=2)
    assert flat.num_classes is None and (flat.files("train")[1] == -1).all()

    (tmp_path / "list.csv").write_text("path,label\nzebra/002.webp,zebra\nant/001.gif,ant\n# comment\n\nant/000.bmp,ant\n")
    listed = read_file_list(tmp_path / "list.csv", tmp_path / "tree")
    assert listed.classes == ["ant", "zebra"] and listed.labels.tolist() == [1, 0, 0]
    (tmp_path / "ints.txt").write_text("ant/000.bmp,3\nzebra/000.jpg,0\n")
    dm = ImageFilesDataModule(root=str(tmp_path / "tree"), train=str(tmp_path / "ints.txt"), batch_size=1, knn_bank_size=0)
    assert dm.num_classes == 4
    val = ImageFilesDataModule(root=str(tmp_path / "tree"), val=str(tmp_path / "list.csv"), batch_size=2, knn_bank_size=1, eval_size=8)
    assert [len(v.dataset) for v in val.val_dataloader()] == [1, 3]
    (tmp_path / "zebras.csv").write_text("zebra/002.webp,zebra\n")  # one class only: still the train's numbering
    only = ImageFilesDataModule(root=str(tmp_path / "tree"), val=str(tmp_path / "zebras.csv"), batch_size=2, eval_size=8)
    assert only.files("val")[1].tolist() == [1]


@pytest.mark.parametrize(
    "setup, message",
    [("empty", "no images found"), ("empty_class", "class folder 'b' holds no images (only 1 non-image file)"),
     ("missing", "list.csv line 2: a/nope.png does not exist"), ("unlabelled_line", "list.csv line 2: no label"),
     ("unknown_val_class", "not among the train classes"), ("no_root", "no such image folder")],
)  # fmt: skip
def test_bad_sources_give_one_clear_line(tmp_path: Path, setup: str, message: str) -> None:
    root = tmp_path / "data"
    root.mkdir()
    kwargs: dict = {}
    if setup == "empty":
        (root / "notes.txt").write_text("x")
    elif setup == "empty_class":
        make_tree(root, {"a": 2})
        (root / "b").mkdir()
        (root / "b" / "x.txt").write_text("x")
    elif setup in ("missing", "unlabelled_line"):
        make_tree(root, {"a": 1})
        second = "a/nope.png,a" if setup == "missing" else "a/000.jpg"
        (tmp_path / "list.csv").write_text(f"a/000.jpg,a\n{second}\n")
        kwargs["train"] = str(tmp_path / "list.csv")
    elif setup == "unknown_val_class":
        make_tree(root, {"a": 2})
        make_tree(tmp_path / "val", {"a": 1, "c": 1})
        kwargs["val"] = str(tmp_path / "val")
    elif setup == "no_root":
        root = tmp_path / "missing"
    with pytest.raises(DataError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ImageFilesDataModule(root=str(root), batch_size=1, **kwargs).setup()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_files_error_or_skip_with_one_warning_per_epoch(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a": 4, "b": 4}, size=(10, 12))
    (tmp_path / "a" / "zero.jpg").write_bytes(b"")
    (tmp_path / "b" / "trunc.png").write_bytes(encode(photo(30, 30), "PNG")[:100])
    strict = ImageFilesDataModule(root=str(tmp_path), batch_size=10, drop_last=False, knn_bank_size=0)
    with pytest.raises(DataError, match=r"zero.jpg: empty file|trunc.png: truncated"):
        list(strict.train_dataloader())
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    dm = ImageFilesDataModule(root=str(tmp_path), batch_size=4, drop_last=False, knn_bank_size=0, on_bad_file="skip")
    dm.trainer = trainer
    seen = []
    with pytest.warns(UserWarning) as record:
        for epoch in range(2):
            trainer.fit_loop.epoch_progress.current.completed = epoch  # trainer.current_epoch
            for batch in dm.train_dataloader():
                seen += dm.on_before_batch_transfer(batch, 0)["index"].tolist()
        dm.teardown("fit")
    messages = [str(w.message) for w in record if "skipped" in str(w.message)]
    assert len(messages) == 2 and all("skipped 2 unreadable image files" in m and "zero.jpg: empty file" in m for m in messages)
    assert len(seen) == 20 and "skipped" not in batch  # readable files stood in: every batch kept its size
    bad = {i for i, p in enumerate(dm.files("train")[0]) if Path(p).name in ("zero.jpg", "trunc.png")}
    assert len(bad) == 2 and not bad & set(seen)


def test_seeded_split_order_and_mid_epoch_resume(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a": 9, "b": 9}, size=(6, 6))

    def indices(dm: ImageFilesDataModule, epoch: int) -> list[int]:
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return [i for b in loader for i in b["index"].tolist()]

    def make() -> ImageFilesDataModule:
        return ImageFilesDataModule(root=str(tmp_path), val_size=4, test_size=0.15, batch_size=3, seed=5, knn_bank_size=0, eval_size=None, drop_last=False)

    dm = make()
    val, test, train = dm.files("val")[0], dm.files("test")[0], dm.files("train")[0]
    assert len(val) == 4 and len(test) == 3 and len(train) == 11 and not set(val) & set(train) and not set(test) & set(train)
    assert make().files("train")[0] == train  # the split is a function of the seed
    epoch0, epoch1 = indices(dm, 0), indices(dm, 1)
    assert sorted(epoch0) == list(range(11)) and epoch0 != epoch1 and indices(make(), 1) == epoch1
    resumed = make()
    resumed.load_state_dict({"train_position": {"epoch": 1, "batches": 2}})
    loader = resumed.train_dataloader()
    assert [i for b in loader for i in b["index"].tolist()] == epoch1[6:]


def test_eval_batches_are_fixed_size_centre_crops(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a": 3, "b": 3})
    dm = ImageFilesDataModule(root=str(tmp_path), val_size=2, batch_size=2, knn_bank_size=4, eval_size=8, crop_fraction=0.5)
    bank, val = dm.val_dataloader()
    for batch in (*bank, *val):
        assert batch["image"].shape[1:] == (3, 8, 8) and (batch["image_size"] == 8).all()
    assert len(dm.predict_dataloader().dataset) == 4  # no test split: the train images


# ---------------------------------------------------------------------------------------------------------------------
# Fashion-MNIST as PNG folders trains exactly like the IDX files


def test_png_class_folder_trains_like_the_idx_files(tmp_path: Path) -> None:
    from zoo.data.images import FASHION_MNIST_DIR, find_idx_files

    if not Path(FASHION_MNIST_DIR).is_dir():
        pytest.skip("Fashion-MNIST IDX files not installed")

    def head(path: Path, header: int, count: int, item: int) -> np.ndarray:  # the first records only: fast
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            return np.frombuffer(f.read(header + count * item)[header:], dtype=np.uint8)

    arrays = {}
    for split, count in (("train", 40), ("test", 10)):
        image_file, label_file = find_idx_files(FASHION_MNIST_DIR)[split]
        images, labels = head(image_file, 16, count, 784).reshape(count, 28, 28), head(label_file, 8, count, 1)
        order = np.lexsort((np.arange(count), labels))  # the folder's order: class folder, then file name
        arrays[split] = images[order], labels[order]
        for i, (image, label) in enumerate(zip(*arrays[split])):
            (tmp_path / "png" / split / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / "png" / split / str(label) / f"{i:05d}.png")
    (tmp_path / "idx").mkdir()
    for split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(tmp_path / "idx" / f"{prefix}-images-idx3-ubyte", arrays[split][0])
        write_idx(tmp_path / "idx" / f"{prefix}-labels-idx1-ubyte", arrays[split][1].astype(np.uint8))
    common = {"batch_size": 8, "val_size": 8, "knn_bank_size": 16, "seed": 3}
    idx = ImageDataModule(dataset="idx", data_dir=str(tmp_path / "idx"), **common)
    png = ImageFilesDataModule(
        root=str(tmp_path / "png" / "train"), test=str(tmp_path / "png" / "test"), channels=1, max_side=None,
        eval_size=None, **common,
    )
    assert png.num_classes == 10
    for a, b in zip(idx.train_dataloader(), png.train_dataloader()):  # same order, same pixels
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    weights = []
    for dm in (idx, png):
        L.seed_everything(0, verbose=False)
        # 16 px views with the strided stem keep the 3 steps cheap; the crops then go through the antialiased path
        encoder = {**TINY_ENCODER, "in_chans": 1, "small_image_stem": False}
        model = CASES["simclr"].build(encoder=encoder, views={"output_size": 16}, num_classes=10)
        trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)  # fmt: skip
        trainer.fit(model, datamodule=dm)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], atol=1e-6, rtol=1e-5)

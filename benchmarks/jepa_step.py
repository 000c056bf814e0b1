"""Throughput and MFU of zoo's I-JEPA / DMT-JEPA training step (default: ViT-S/16 at 224×224, bf16 autocast).

One step is exactly what ``zoo fit`` runs per batch, minus Lightning: device-side crop and multi-block masks,
target encoder on the full image, context encoder on the context patches, predictor, smooth-L1 loss, backward,
AdamW step, EMA update of the targets. FLOPs per step are counted once with ``torch.utils.flop_counter`` (matmuls
and attention; a multiply-add counts 2), so MFU = FLOPs/step × steps/s ÷ the accelerator's peak dense bf16 FLOP/s
(``--peak-tflops``, default 989 for an H100 SXM).

    python benchmarks/jepa_step.py --device cuda                      # eager, SDPA attention, fused AdamW
    python benchmarks/jepa_step.py --device cuda --compile            # + torch.compile of encoders and predictor
    python benchmarks/jepa_step.py --device cuda --no-sdpa --no-fused-adamw   # the plain baseline
    python benchmarks/jepa_step.py --device cpu --img-size 64 --patch-size 8 --embed-dim 64 --depth 2 \\
        --num-heads 2 --predictor-dim 32 --predictor-depth 1 --batch-size 8 --steps 3 --warmup 1 --dtype fp32

Context lengths vary from batch to batch (the masks are truncated to the batch minimum), so ``--compile`` uses
``dynamic=True`` rather than recompiling for every length. Prints one Markdown table row per run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=["ijepa", "dmt_jepa"], default="ijepa")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help="autocast dtype (weights stay fp32)")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--embed-dim", type=int, default=384)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--num-heads", type=int, default=6)
    parser.add_argument("--predictor-dim", type=int, default=384)
    parser.add_argument("--predictor-depth", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, allocator)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoders and the predictor")
    parser.add_argument("--sdpa", action=argparse.BooleanOptionalAction, default=True,
                        help="timm attention through F.scaled_dot_product_attention (flash/memory-efficient kernels)")
    parser.add_argument("--fused-adamw", action=argparse.BooleanOptionalAction, default=True,
                        help="torch.optim.AdamW(fused=True) (CUDA only; falls back to foreach elsewhere)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="peak dense FLOP/s of the device, in TFLOP/s")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    import timm.layers

    # timm's Attention reads this flag when it is constructed, so set it before building the model
    timm.layers.set_fused_attn(args.sdpa)
    import zoo.methods  # noqa: F401  (registers the methods)
    from zoo.registry import create_model

    encoder = {
        "img_size": args.img_size, "patch_size": args.patch_size, "in_chans": 3, "embed_dim": args.embed_dim,
        "depth": args.depth, "num_heads": args.num_heads,
    }
    model = create_model(
        args.method, encoder=encoder, predictor_dim=args.predictor_dim, predictor_depth=args.predictor_depth,
        predictor_heads=args.num_heads,
    ).to(args.device)
    model.train()
    fused = args.fused_adamw and torch.device(args.device).type == "cuda"
    groups = [{k: v for k, v in g.items() if k != "name"} for g in model.parameter_groups()]
    optimizer = torch.optim.AdamW(groups, lr=1e-3, fused=fused, foreach=None if fused else True)
    return model, optimizer


def compile_networks(model: torch.nn.Module) -> None:
    """torch.compile the modules whose ``forward`` the step calls (the DMT heads are called through other methods,
    so they stay eager)."""
    for name in ("encoder", "target_encoder", "predictor"):
        setattr(model, name, torch.compile(getattr(model, name), dynamic=True))


def measure(args: argparse.Namespace) -> dict[str, float | str]:
    """Build, count FLOPs, warm up, time; returns the figures of one table row."""
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    model, optimizer = build(args)
    images = torch.randint(0, 256, (args.batch_size, 3, args.img_size, args.img_size), dtype=torch.uint8, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    def step() -> torch.Tensor:
        batch = {"image": images, **model.make_inputs({"image": images})}
        with autocast:
            loss = model.ssl_step(batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.update_targets()
        return loss

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # one eager step, before compiling: what the step computes
        step()
    flops = counter.get_total_flops()
    if args.compile:
        compile_networks(model)
    for _ in range(args.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    achieved = flops / seconds
    fused = args.fused_adamw and device.type == "cuda"  # build() falls back to foreach AdamW elsewhere
    options = ", ".join(o for o, on in (("compile", args.compile), ("SDPA", args.sdpa), ("fused AdamW", fused)) if on) or "plain"
    return {
        "method": args.method, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "model": f"ViT d{args.embed_dim} L{args.depth} /{args.patch_size} @{args.img_size}", "batch": args.batch_size,
        "dtype": args.dtype, "options": options, "gflop_per_step": flops / 1e9, "step_ms": seconds * 1e3,
        "samples_per_s": args.batch_size / seconds, "tflops": achieved / 1e12,
        "mfu": achieved / (args.peak_tflops * 1e12), "loss": loss.item(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    r = measure(args)
    print("| method | device | model | batch | dtype | options | GFLOP/step | step ms | samples/s | TFLOP/s | MFU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {r['method']} | {r['device']} | {r['model']} | {r['batch']} | {r['dtype']} | {r['options']} "
        f"| {r['gflop_per_step']:.1f} | {r['step_ms']:.1f} | {r['samples_per_s']:.1f} | {r['tflops']:.3f} | {r['mfu']:.1%} |"
    )
    print(f"(last loss {r['loss']:.4f}; MFU against a peak of {args.peak_tflops:g} TFLOP/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

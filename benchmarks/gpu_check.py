"""``python -m benchmarks.gpu_check [--dry-run] [--out DIR]``: everything zoo should prove on a GPU, in one run.

GPU time is scarce (one H200 now and then, minutes at a time), so this is prepared and tested on CPU first: the
``--dry-run`` mode runs the same sections on the CPU with tiny sizes and is part of the test suite. Sections, each
under its own time budget and failure isolation (an error or a timeout is reported, the next section still runs;
the report is rewritten after every section, so a run killed from outside still leaves one):

- ``environment``: torch/CUDA/driver/NCCL versions, the GPU, package versions;
- ``precision``: every method (tests/method_cases.py, the suite's one table of tiny cases) trains 30 steps through
  Lightning under bf16-mixed and 16-mixed (GradScaler): finite losses, first loss within 5% of fp32; host syncs:
  ``torch.cuda.set_sync_debug_mode("warn")`` from the end of step 2 to the end of the run (so data transfer, views,
  forward, backward, optimizer, EMA and Lightning's loop are all covered), each warning attributed to the innermost
  zoo source line of the Python stack at the time (else Lightning's or torch's);
- ``ddp``: the DDP presets' SyncBN (configs/trainer/ddp_bf16.yaml) really converts and runs; NT-Xent on 2 processes
  (NCCL with a GPU per rank; else NCCL's refusal is shown and gloo runs on CPU tensors, since gloo cannot all_gather
  CUDA tensors) equals the loss and gradients of 1 process on the whole batch;
- ``fsdp``: BYOL and SwAV under configs/trainer/fsdp_bf16.yaml on one GPU: EMA targets move as under DDP, prototypes
  unit norm, a checkpoint saved after 3 steps and resumed for 2 equals an uninterrupted 5-step run;
- ``compile``: step speed-up of ``compile=True`` per method, same loss; ``channels_last``: CNN step speed-up;
- ``benchmark``: ``benchmarks.run`` zoo vs lightly at batch 512, R18 32 px and R50 224 px, bf16 + channels_last;
- ``jepa_mfu``: benchmarks/jepa_step.py MFU for ViT-S/16 and ViT-B/16, eager and compiled.

Writes ``report.md`` and ``results.json`` into ``--out`` (default ``$OUT``, else
benchmarks/results/gpu-check-<date>-<gpu>).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

PRESETS = ROOT / "configs" / "trainer"


class SectionTimeout(BaseException):
    """Raised by the alarm when a section's budget is spent (a BaseException, so no ``except Exception`` in the
    code under test swallows it; Lightning re-raises it after its own teardown)."""


@dataclass
class Section:
    name: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    status: str = "not run"
    seconds: float = 0.0
    budget: float = 0.0
    error: str = ""

    def check(self, name: str, ok: bool | None, detail: Any = "") -> bool:
        """Record one check: True passed, False failed, None skipped (``detail`` says why)."""
        self.checks.append({"check": name, "result": {True: "pass", False: "FAIL", None: "skipped"}[ok], "detail": detail})
        return bool(ok)

    def skip(self, name: str, why: str) -> None:
        self.check(name, None, why)


@dataclass
class Context:
    dry: bool
    device: str
    out: Path
    steps: int  # training steps per precision run
    workdir: Path

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


# ---- helpers ----------------------------------------------------------------------------------------------------
def _trainer(ctx: Context, **overrides: Any):
    import lightning as L

    kwargs = dict(
        accelerator="gpu" if ctx.cuda else "cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        default_root_dir=str(ctx.workdir),
    )  # fmt: skip
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def _loader(case, batch: int, steps: int, seed: int = 0, same_batches: bool = False):
    """``steps`` batches of the case's raw data; ``same_batches``: every batch the same samples (a resumed run then
    sees the same data as an uninterrupted one whatever the loader position; views still differ per step)."""
    from torch.utils.data import DataLoader

    from tests.method_cases import take

    data = case.raw_batch(batch if same_batches else batch * steps, seed)
    indices = [i % batch for i in range(batch * steps)] if same_batches else list(range(batch * steps))
    return DataLoader(indices, batch_size=batch, collate_fn=lambda idx: take(data, torch.tensor(idx)))


def _preset(name: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((PRESETS / name).read_text())["trainer"]


def _release_process_group() -> None:
    """Lightning's DDP/FSDP strategies leave the default process group behind after ``fit`` (also after a failed
    one); a later single-device fit in this process then ran 6× slower (measured on the CPU), so each section that
    made one removes it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _sync(ctx: Context) -> None:
    if ctx.cuda:
        torch.cuda.synchronize()


class _Losses:
    """A Lightning callback recording each step's loss (callback class built lazily: Lightning imports on use)."""

    @staticmethod
    def make():
        import lightning as L

        class Recorder(L.Callback):
            def __init__(self) -> None:
                self._losses: list[torch.Tensor] = []

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
                self._losses.append(outputs["loss"].detach())  # read after the run: no host sync inside the steps

            @property
            def losses(self) -> list[float]:
                return [float(v) for v in self._losses]

        return Recorder()


class SyncWatch:
    """Host-sync detector: ``torch.cuda.set_sync_debug_mode("warn")`` between ``start()`` and ``stop()``; every
    warning is attributed to the innermost frame of the Python stack that lies in zoo/ (else lightning, else torch).
    Those warnings come from Python threads only (autograd's device threads print theirs to stderr), so the CUDA
    runtime's synchronising calls are also counted over the same window with the profiler (all threads, no place)."""

    def __init__(self, profile: bool = True) -> None:
        self.profile = profile
        self.sites: dict[str, int] = {}
        self.runtime_syncs: dict[str, int] | str = {}
        self._catcher: contextlib.ExitStack | None = None
        self._profiler: Any = None

    @staticmethod
    def _site() -> str:
        import lightning

        import zoo

        stack = traceback.extract_stack()[:-3]  # without this function, the handler and warnings' own frame
        for package, label in ((zoo, "zoo"), (lightning, "lightning"), (torch, "torch")):
            root = str(Path(package.__file__).parent) + os.sep
            for frame in reversed(stack):
                if frame.filename.startswith(root):
                    where = frame.filename[len(root):]
                    return f"{label}/{where}:{frame.lineno} ({frame.name}: {(frame.line or '').strip()[:80]})"
        return f"{stack[-1].filename}:{stack[-1].lineno}" if stack else "unknown"

    def start(self) -> None:
        if self._catcher is not None:
            return
        self._catcher = contextlib.ExitStack()
        self._catcher.enter_context(warnings.catch_warnings())
        warnings.simplefilter("always")
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
            if "synchronizing CUDA operation" in str(message):
                site = self._site()
                self.sites[site] = self.sites.get(site, 0) + 1
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode("warn")
        if not self.profile:
            return
        try:
            from torch.profiler import ProfilerActivity, profile

            self._profiler = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            self._profiler.__enter__()
        except Exception as e:  # noqa: BLE001 (the warnings above still count)
            self._profiler, self.runtime_syncs = None, f"profiler unavailable: {e}"

    def stop(self) -> None:
        if self._catcher is None:
            return
        torch.cuda.set_sync_debug_mode("default")
        self._catcher.close()
        self._catcher = None
        if self._profiler is not None:
            try:
                self._profiler.__exit__(None, None, None)
                self.runtime_syncs = {e.key: e.count for e in self._profiler.key_averages() if "Synchronize" in e.key}
            except Exception as e:  # noqa: BLE001
                self.runtime_syncs = f"profiler failed: {e}"
            self._profiler = None

    def callback(self, first_step: int):
        import lightning as L

        watch = self

        class Watch(L.Callback):
            # from the end of step `first_step` on: the next batch's fetch, transfer and views are inside the window
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
                if batch_idx + 1 >= first_step:
                    watch.start()

            def on_train_end(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
                watch.stop()

            def on_exception(self, trainer, pl_module, exception) -> None:  # type: ignore[no-untyped-def]
                watch.stop()

        return Watch()


def attempt(s: Section, name: str, fn: Callable[[], Any]) -> Any:
    """Run one item of a section; an error becomes a failed check and the section goes on with its next item."""
    try:
        return fn()
    except SectionTimeout:
        raise
    except Exception as e:  # noqa: BLE001
        s.check(name, False, f"{type(e).__name__}: {str(e).strip()[-500:]}")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None


#: host syncs that zoo makes on purpose, once per step: the NaN/inf guard, which stops a run at the step that went
#: non-finite instead of letting it train on garbage
DELIBERATE_SYNCS = ("_check_finite",)


# ---- sections ---------------------------------------------------------------------------------------------------
def section_environment(ctx: Context, s: Section) -> None:
    import lightning
    import timm

    s.data.update(python=platform.python_version(), torch=torch.__version__, lightning=lightning.__version__,
                  timm=timm.__version__, cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                  cuda_available=torch.cuda.is_available())  # fmt: skip
    try:
        import lightly

        s.data["lightly"] = lightly.__version__
    except ImportError:
        s.data["lightly"] = "not installed"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        s.data.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(), cuda=torch.version.cuda,
                      capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                      gpu_memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                      bf16=torch.cuda.is_bf16_supported())  # fmt: skip
        with contextlib.suppress(Exception):
            version = torch.cuda.nccl.version()
            s.data["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    s.check("CUDA device present", True if ctx.cuda else None, s.data.get("gpu", "no CUDA (dry run)"))


def section_precision(ctx: Context, s: Section) -> None:
    """Every method under bf16-mixed and 16-mixed: finite losses, first loss near fp32, host syncs."""
    import lightning as L

    from tests.method_cases import CASES

    batch = 16 if ctx.cuda else 8
    for name, case in CASES.items():
        fp32 = _Losses.make()
        L.seed_everything(0, verbose=False)  # the same views and masks in every precision
        _trainer(ctx, precision="32-true", max_steps=1, callbacks=[fp32]).fit(case.build(), _loader(case, batch, ctx.steps))
        s.data.setdefault(name, {})["fp32_first_loss"] = fp32.losses[0]
        for precision in ("bf16-mixed", "16-mixed"):
            key = f"{name} {precision}"
            if precision == "16-mixed" and not ctx.cuda:
                s.skip(key, "no CUDA (Lightning's 16-mixed needs a GPU)")
                continue
            recorder, watch = _Losses.make(), SyncWatch()
            callbacks = [recorder] + ([watch.callback(first_step=2)] if ctx.cuda else [])
            start = time.perf_counter()
            L.seed_everything(0, verbose=False)
            _trainer(ctx, precision=precision, max_steps=ctx.steps, callbacks=callbacks).fit(
                case.build(), _loader(case, batch, ctx.steps)
            )
            seconds = time.perf_counter() - start
            losses = recorder.losses
            finite = len(losses) == ctx.steps and all(math.isfinite(v) for v in losses)
            close = abs(losses[0] - fp32.losses[0]) <= 0.05 * abs(fp32.losses[0]) + 1e-3 if losses else False
            s.data[name][precision] = {"losses": losses, "seconds": round(seconds, 2), "syncs": watch.sites,
                                       "runtime_syncs": watch.runtime_syncs}
            s.check(f"{key}: {ctx.steps} finite losses", finite, f"last {losses[-1]:.4f}" if losses else "no loss")
            s.check(f"{key}: first loss within 5% of fp32", close, f"{losses[0]:.4f} vs fp32 {fp32.losses[0]:.4f}" if losses else "")
            if not ctx.cuda:
                s.skip(f"{key}: host syncs in the step", "no CUDA (torch.cuda.set_sync_debug_mode needs a GPU)")
                continue
            zoo_sites = {k: v for k, v in watch.sites.items() if k.startswith("zoo/") and not any(d in k for d in DELIBERATE_SYNCS)}
            others = {k: v for k, v in watch.sites.items() if k not in zoo_sites}
            s.check(f"{key}: no host syncs in zoo code (besides the NaN guard)", not zoo_sites,
                    f"zoo: {zoo_sites or 'none'}; elsewhere (Lightning/torch/NaN guard): {others or 'none'}; "
                    f"CUDA runtime sync calls over steps 3-{ctx.steps} (profiler): {watch.runtime_syncs or 'none'}")


def _nt_xent_rank(rank: int, world: int, backend: str, device: str, port: int, result_dir: str) -> None:
    import torch.distributed as dist

    from zoo.losses.nt_xent import nt_xent_loss

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if device == "cuda":  # one GPU per rank
        device = f"cuda:{rank}"
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(0)
        n, d = 16, 8
        z1, z2 = torch.randn(world * n, d, generator=g), torch.randn(world * n, d, generator=g)
        rows = slice(rank * n, (rank + 1) * n)
        a = z1[rows].clone().to(device).requires_grad_()
        b = z2[rows].clone().to(device).requires_grad_()
        loss = nt_xent_loss(a, b, 0.5, gather_distributed=True)
        loss.backward()
        torch.save({"loss": loss.item(), "g1": a.grad.cpu(), "g2": b.grad.cpu()}, Path(result_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _nt_xent_equivalence(ctx: Context, s: Section, backend: str, device: str, timeout: float, why_it_may_fail: str = "") -> bool:
    """2 ranks of NT-Xent vs 1 process; a failure that ``why_it_may_fail`` explains is recorded as skipped."""
    import torch.multiprocessing as mp

    from zoo.losses.nt_xent import nt_xent_loss

    world = 2
    with tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp:
        port = 29500 + os.getpid() % 1000
        # spawn: CUDA cannot be forked, and forked gloo ranks hung here on the CPU too
        start_method = "spawn"
        procs = mp.start_processes(_nt_xent_rank, args=(world, backend, device, port, tmp), nprocs=world, join=False,
                                   start_method=start_method)  # fmt: skip
        deadline = time.monotonic() + timeout
        try:
            while not procs.join(timeout=0.5):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{backend} ranks did not finish within {timeout:.0f} s")
        except BaseException as e:
            for p in procs.processes:
                if p.is_alive():
                    p.terminate()
                p.join(5)
            if isinstance(e, SectionTimeout):
                raise
            detail = f"{type(e).__name__}: {str(e).strip()[-400:]}"
            s.check(f"NT-Xent on 2 processes ({backend}, {device})", None if why_it_may_fail else False,
                    f"{why_it_may_fail}: {detail}" if why_it_may_fail else detail)
            return False
        results = [torch.load(Path(tmp) / f"rank{r}.pt") for r in range(world)]
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(world * 16, 8, generator=g).requires_grad_(), torch.randn(world * 16, 8, generator=g).requires_grad_()
    full = nt_xent_loss(z1, z2, 0.5, gather_distributed=False)
    full.backward()
    mean_loss = sum(r["loss"] for r in results) / world
    # DDP averages gradients over ranks: rank r's gradient / W must equal the full-batch gradient of its rows
    g1 = torch.cat([r["g1"] for r in results]) / world
    g2 = torch.cat([r["g2"] for r in results]) / world
    err = max((g1 - z1.grad).abs().max().item(), (g2 - z2.grad).abs().max().item())
    ok = abs(mean_loss - full.item()) < 1e-4 and err < 1e-5
    s.data[f"nt_xent_{backend}"] = {"mean_rank_loss": mean_loss, "one_process_loss": full.item(), "max_grad_err": err}
    return s.check(f"NT-Xent on 2 processes ({backend}, {device}) = 1 process on the whole batch", ok,
                   f"loss {mean_loss:.6f} vs {full.item():.6f}, max grad error {err:.2e}")


def section_ddp(ctx: Context, s: Section) -> None:
    import lightning as L
    from torch import nn

    from tests.method_cases import CASES

    case = CASES["simclr"]
    preset = _preset("ddp_bf16.yaml")
    recorder = _Losses.make()
    seen: list[tuple[int, int]] = []

    class CountBN(L.Callback):  # during training: Lightning reverts SyncBN to plain BN in its teardown
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
            seen.append((sum(isinstance(m, nn.SyncBatchNorm) for m in pl_module.modules()),
                         sum(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in pl_module.modules())))

    overrides = {k: v for k, v in preset.items() if k not in ("accelerator", "devices")}
    if not ctx.cuda:
        overrides["precision"] = "bf16-mixed"
    trainer = _trainer(ctx, **overrides, max_steps=2, callbacks=[recorder, CountBN()])
    # the conversion Lightning applies in the DDP strategy's setup, applied here to a fresh model
    layer_sync = getattr(trainer.strategy, "_layer_sync", None)
    converted = layer_sync.apply(case.build()) if layer_sync is not None else case.build()
    sync = sum(isinstance(m, nn.SyncBatchNorm) for m in converted.modules())
    plain = sum(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in converted.modules())
    s.check("ddp_bf16 preset: the strategy converts every BatchNorm to SyncBatchNorm", sync > 0 and plain == 0,
            f"{type(trainer.strategy).__name__}, {sync} SyncBN, {plain} plain BN")
    try:
        L.seed_everything(0, verbose=False)
        trainer.fit(case.build(), _loader(case, 16, 2))
    except Exception as e:  # DDP refuses SyncBN on CPU modules
        s.data["ddp_fit_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    finally:
        _release_process_group()
    if ctx.cuda:
        s.check("ddp_bf16 preset: 2 steps with SyncBN active, finite losses",
                bool(seen) and all(a > 0 and b == 0 for a, b in seen) and len(recorder.losses) == 2
                and all(map(math.isfinite, recorder.losses)),
                s.data.get("ddp_fit_error", f"(SyncBN, plain BN) per step {seen}, losses {recorder.losses}"))
    else:
        s.skip("ddp_bf16 preset: 2 steps with SyncBN", f"no CUDA ({s.data.get('ddp_fit_error', 'SyncBN runs on GPUs')})")
    if ctx.cuda:
        gpus = torch.cuda.device_count()
        # NCCL refuses two ranks on one GPU ("Duplicate GPU detected"); tried anyway so the report shows its words
        why = "" if gpus >= 2 else f"{gpus} GPU: NCCL needs one GPU per rank"
        nccl_ok = _nt_xent_equivalence(ctx, s, "nccl", "cuda" if gpus >= 2 else "cuda:0", timeout=25, why_it_may_fail=why)
        if not nccl_ok:
            # gloo cannot all_gather CUDA tensors: the 2-process equivalence then runs on CPU tensors
            _nt_xent_equivalence(ctx, s, "gloo", "cpu", timeout=25)
    else:
        s.skip("NT-Xent on 2 processes (nccl)", "no CUDA")
        _nt_xent_equivalence(ctx, s, "gloo", "cpu", timeout=100)


def _fit_state(ctx: Context, case, strategy: Any, precision: str, steps: int = 5, stop_after: int | None = None,
               ckpt_in: Path | None = None, **build: Any) -> dict[str, Any]:
    """Train to ``steps`` (the schedules span them), stopping early after ``stop_after`` steps or resuming from
    ``ckpt_in``; save a full checkpoint and return its state dict, global step and path."""
    import lightning as L

    class StopAfter(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
            if stop_after is not None and trainer.global_step >= stop_after:
                trainer.should_stop = True

    model = case.build(**build)
    trainer = _trainer(ctx, strategy=strategy, precision=precision, max_steps=steps, callbacks=[StopAfter()])
    L.seed_everything(0, verbose=False)
    path = ctx.workdir / f"state-{time.monotonic_ns()}.ckpt"
    try:
        trainer.fit(model, _loader(case, 8, steps, same_batches=True), ckpt_path=str(ckpt_in) if ckpt_in else None)
        trainer.save_checkpoint(path)
    finally:
        _release_process_group()
    state = torch.load(path, map_location="cpu", weights_only=False)
    return {"state": state["state_dict"], "global_step": state["global_step"], "path": path}


def section_fsdp(ctx: Context, s: Section) -> None:
    from tests.method_cases import CASES

    preset = _preset("fsdp_bf16.yaml")
    if ctx.cuda:
        from lightning.pytorch.strategies import FSDPStrategy

        make_fsdp = lambda: FSDPStrategy(**preset["strategy"]["init_args"])  # noqa: E731
        reference, precision = "ddp", preset["precision"]
    else:
        # Lightning's FSDPStrategy refuses the CPU: the checks below run under the single-device strategy, in fp32
        # (two identical bf16-mixed CPU runs of the tiny SwAV case differ, so a resume could not be compared)
        s.skip("FSDP strategy itself", "no CUDA (Lightning's FSDPStrategy needs a GPU): checks ran on the default strategy, fp32")
        make_fsdp, reference, precision = (lambda: "auto"), "auto", "32-true"
    for method in ("byol", "swav"):
        case = CASES[method]
        build = {"freeze_prototypes_steps": 0} if method == "swav" else {}
        init = {k: v.clone() for k, v in case.build(**build).state_dict().items()}
        ref = _fit_state(ctx, case, reference, precision, **build)
        full = _fit_state(ctx, case, make_fsdp(), precision, **build)
        first = _fit_state(ctx, case, make_fsdp(), precision, stop_after=3, **build)
        resumed = _fit_state(ctx, case, make_fsdp(), precision, ckpt_in=first["path"], **build)
        if method == "byol":
            keys = [k for k in full["state"] if k.startswith("target_") and full["state"][k].is_floating_point()]
            moved = sum((ref["state"][k].float() - init[k].float()).norm() ** 2 for k in keys) ** 0.5
            diff = sum((full["state"][k].float() - ref["state"][k].float()).norm() ** 2 for k in keys) ** 0.5
            s.data[method] = {"target_moved_norm": float(moved), "fsdp_vs_reference_norm": float(diff)}
            s.check(f"byol: EMA targets move under FSDP as under {reference}", float(moved) > 0 and float(diff) <= 0.05 * float(moved),
                    f"|Δ target| {float(moved):.4g}, |FSDP − {reference}| {float(diff):.4g}")
        else:
            norms = full["state"]["prototypes.layer.weight"].float().norm(dim=1)
            s.data[method] = {"prototype_norm_min": norms.min().item(), "prototype_norm_max": norms.max().item()}
            s.check("swav: prototypes unit norm after FSDP steps", bool((norms - 1).abs().max() < 1e-3),
                    f"row norms in [{norms.min():.5f}, {norms.max():.5f}]")
        worst = max((resumed["state"][k].float() - full["state"][k].float()).abs().max().item()
                    for k in full["state"] if full["state"][k].is_floating_point())  # fmt: skip
        s.data[method]["resume_max_abs_diff"] = worst
        s.check(f"{method}: checkpoint after 3 steps + resume to 5 = uninterrupted 5 steps",
                first["global_step"] == 3 and resumed["global_step"] == full["global_step"] == 5 and worst < 1e-3,
                f"global steps {first['global_step']} → {resumed['global_step']} (uninterrupted {full['global_step']}), max |Δw| {worst:.2e}")


def _zoo_step_rate(ctx: Context, method: str, setting, steps: int, warmup: int, precision: str) -> tuple[float, float]:
    """samples/s and last loss of zoo's step in benchmarks.models (median of 3 timed blocks)."""
    from benchmarks.models import build, example_views

    torch.manual_seed(0)
    contender = build("zoo", method, setting)
    views = example_views(method, setting)
    autocast = torch.autocast(ctx.device, dtype=torch.bfloat16, enabled=precision == "bf16")
    rates = []
    with autocast:
        for _ in range(warmup):
            loss = contender.step_fn(views)
        _sync(ctx)
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(steps):
                loss = contender.step_fn(views)
            _sync(ctx)
            rates.append(steps * setting.batch_size / (time.perf_counter() - start))
    del contender
    if ctx.cuda:
        torch.cuda.empty_cache()
    return sorted(rates)[1], float(loss)


def section_compile(ctx: Context, s: Section) -> None:
    from benchmarks.models import Setting

    if ctx.cuda:
        setting, steps, warmup, precision = Setting("resnet18", 32, 256, 300, "cuda"), 10, 3, "bf16"
        options: Any = True
    else:
        # inductor's C++ build takes minutes on a small CPU: the dry run compiles with dynamo's eager backend
        s.skip("inductor", "no CUDA: compiled with backend 'eager' (dynamo capture only)")
        setting, steps, warmup, precision = Setting("resnet10t", 16, 4, 16, "cpu"), 1, 1, "32"
        options = {"backend": "eager"}
    def one(method: str) -> None:
        eager, eager_loss = _zoo_step_rate(ctx, method, setting, steps, warmup, precision)
        compiled, compiled_loss = _zoo_step_rate(ctx, method, Setting(**{**setting.__dict__, "compile": options}), steps, warmup, precision)
        s.data[method] = {"eager_samples_per_s": eager, "compiled_samples_per_s": compiled, "speedup": compiled / eager}
        s.check(f"{method}: compile=True speed-up {compiled / eager:.2f}× ({eager:.0f} → {compiled:.0f} samples/s)",
                math.isfinite(compiled_loss), f"loss eager {eager_loss:.4f}, compiled {compiled_loss:.4f}")

    for method in ("simclr", "byol", "swav") if ctx.cuda else ("simclr",):
        attempt(s, f"{method}: compile", lambda: one(method))  # noqa: B023 (attempt() calls it at once)


def section_channels_last(ctx: Context, s: Section) -> None:
    from benchmarks.models import Setting, build

    if ctx.cuda:
        settings = [Setting("resnet18", 32, 512, 300, "cuda"), Setting("resnet50", 224, 128, 300, "cuda")]
        steps, warmup, precision = 10, 3, "bf16"
    else:
        # 32 px: at 16 px resnet10t's layer4 sees 1×1 maps, where the CPU's bf16 conv backward is wrong (zoo refuses it)
        settings, steps, warmup, precision = [Setting("resnet10t", 32, 4, 16, "cpu")], 1, 1, "bf16"
    def one(setting: Setting) -> None:
        fast = Setting(**{**setting.__dict__, "channels_last": True})
        probe = build("zoo", "simclr", fast).model
        convs = [m.weight for m in probe.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1]
        s.check(f"{setting.backbone}: conv weights channels-last", all(w.is_contiguous(memory_format=torch.channels_last) for w in convs),
                f"{len(convs)} convolutions")
        del probe
        plain, _ = _zoo_step_rate(ctx, "simclr", setting, steps, warmup, precision)
        cl, loss = _zoo_step_rate(ctx, "simclr", fast, steps, warmup, precision)
        key = f"simclr {setting.backbone} {setting.image_size}px bs{setting.batch_size} {precision}"
        s.data[key] = {"contiguous_samples_per_s": plain, "channels_last_samples_per_s": cl, "speedup": cl / plain}
        s.check(f"{key}: channels_last speed-up {cl / plain:.2f}×", math.isfinite(loss), f"{plain:.0f} → {cl:.0f} samples/s")

    for setting in settings:
        attempt(s, f"channels_last {setting.backbone}", lambda: one(setting))  # noqa: B023 (attempt() calls it at once)


def section_benchmark(ctx: Context, s: Section) -> None:
    from benchmarks import run

    if ctx.cuda:
        runs = [
            ["--backbone", "resnet18", "--image-size", "32", "--batch-size", "512", "--repeats", "3", "--steps", "10",
             "--epoch-batches", "6", "--workers", "12"],
            ["--backbone", "resnet50", "--image-size", "224", "--batch-size", "512", "--repeats", "2", "--steps", "4",
             "--epoch-batches", "3", "--workers", "12", "--methods", "simclr", "byol"],
        ]  # fmt: skip
        common = ["--device", "cuda", "--precision", "bf16", "--channels-last", "--warmup", "2", "--no-isolate"]
    else:
        runs = [["--backbone", "resnet10t", "--image-size", "16", "--batch-size", "4", "--repeats", "1", "--steps", "1",
                 "--epoch-batches", "1", "--workers", "0", "--methods", "simclr"]]  # fmt: skip
        common = ["--device", "cpu", "--precision", "32", "--warmup", "0", "--no-isolate"]
    def one(argv: list[str]) -> None:
        label = f"{argv[1]} {argv[3]}px bs{argv[5]}"
        out = ctx.workdir / f"bench-{argv[1]}"
        run.main([*argv, *common, "--out", str(out)])
        result = json.loads(next(out.glob("benchmark-*.json")).read_text())
        s.data[label] = result
        for row in result["rows"]:
            if row["library"] == "zoo" and "step_ratio" in row:
                s.check(f"{label} {row['method']}: zoo/lightly step {row['step_ratio']:.2f}×, end-to-end {row['epoch_ratio']:.2f}×",
                        row["step_ratio"] >= 1.0 if ctx.cuda else None, "goal: step ≥ 1.0× lightly" if ctx.cuda else "dry run")
        s.data[label + " table"] = next(out.glob("benchmark-*.md")).read_text()

    for argv in runs:
        attempt(s, f"benchmarks.run {argv[1]} {argv[3]}px", lambda: one(argv))  # noqa: B023 (attempt() calls it at once)


def section_jepa_mfu(ctx: Context, s: Section) -> None:
    from benchmarks import jepa_step

    if ctx.cuda:
        vits = {"ViT-S/16": ["--embed-dim", "384", "--num-heads", "6"], "ViT-B/16": ["--embed-dim", "768", "--num-heads", "12"]}
        common = ["--device", "cuda", "--batch-size", "256", "--steps", "10", "--warmup", "3", "--peak-tflops", "989"]
        variants = [("eager", []), ("compiled", ["--compile"])]
    else:
        vits = {"ViT d32/8": ["--embed-dim", "32", "--num-heads", "2"]}
        common = ["--device", "cpu", "--img-size", "64", "--patch-size", "8", "--depth", "1", "--predictor-dim", "16",
                  "--predictor-depth", "1", "--batch-size", "2", "--steps", "1", "--warmup", "0", "--dtype", "fp32"]  # fmt: skip
        variants = [("eager", [])]
        s.skip("compiled variants", "no CUDA (inductor's CPU build takes minutes here)")
    def one(name: str, variant: str, argv: list[str]) -> None:
        row = jepa_step.measure(jepa_step.parse_args(argv))
        s.data[f"{name} {variant}"] = row
        ok = row["mfu"] >= 0.30 if ctx.cuda and variant == "compiled" else math.isfinite(row["loss"])
        s.check(f"{name} {variant}: MFU {row['mfu']:.1%}, {row['samples_per_s']:.0f} samples/s, {row['step_ms']:.1f} ms/step", ok,
                "goal ≥ 30% compiled" if variant == "compiled" else f"loss {row['loss']:.4f}")

    # the small model first, eager before compiled: what the budget cuts is the slowest
    for name, dims in vits.items():
        for variant, extra in variants:
            attempt(s, f"{name} {variant}", lambda: one(name, variant, [*common, *dims, *extra]))  # noqa: B023 (attempt() calls it at once)


#: (name, function, GPU budget in s, dry-run budget in s), in running order. The GPU budgets sum to 430 s so the
#: whole script stays under 8 minutes with start-up and installing the wheels; the dry-run budgets only catch hangs
#: (a quiet 2-core machine runs the whole dry run in about 30 s)
SECTIONS: list[tuple[str, Callable[[Context, Section], None], float, float]] = [
    ("environment", section_environment, 5, 60),
    ("precision", section_precision, 75, 120),
    ("ddp", section_ddp, 60, 120),
    ("fsdp", section_fsdp, 55, 120),
    ("channels_last", section_channels_last, 25, 60),
    ("compile", section_compile, 60, 120),
    ("benchmark", section_benchmark, 90, 60),
    ("jepa_mfu", section_jepa_mfu, 60, 60),
]


# ---- running and reporting --------------------------------------------------------------------------------------
def preload() -> dict[str, str]:
    """Import everything the sections use before any budget starts: an alarm that lands inside a first import
    leaves half-initialised modules behind (sympy, torchvision) and breaks every later section."""
    import importlib

    missing = {}
    for name in ("lightning", "timm", "torchvision", "yaml", "torch._dynamo", "torch.distributed.fsdp",
                 "torch.utils.flop_counter", "zoo.methods", "tests.method_cases", "benchmarks.models",
                 "benchmarks.run", "benchmarks.jepa_step", "lightly.loss", "lightly.models.modules", "lightly.transforms"):  # fmt: skip
        try:
            importlib.import_module(name)
        except ImportError as e:  # reported by the sections that need it
            missing[name] = str(e)
    return missing


def _on_alarm(signum, frame):  # type: ignore[no-untyped-def]
    raise SectionTimeout()


def run_section(ctx: Context, name: str, fn: Callable[[Context, Section], None], budget: float) -> Section:
    section = Section(name, budget=budget)
    start = time.perf_counter()
    # Lightning's DDP strategy sets torch's thread count (cpu_count / local processes) and leaves it so
    threads = torch.get_num_threads()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        fn(ctx, section)
        failed = [c for c in section.checks if c["result"] == "FAIL"]
        section.status = "FAILED" if failed else "passed"
    except SectionTimeout:
        section.status = "TIMEOUT"
        section.error = f"budget of {budget:.0f} s spent; the checks above ran, the rest did not"
    except BaseException as e:  # noqa: BLE001 (one section's failure must not stop the others)
        if isinstance(e, KeyboardInterrupt):
            raise
        section.status = "ERROR"
        section.error = "".join(traceback.format_exception(e))[-3000:]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        torch.set_num_threads(threads)
        _release_process_group()
        with contextlib.suppress(Exception):
            torch.cuda.set_sync_debug_mode("default") if torch.cuda.is_available() else None
    section.seconds = time.perf_counter() - start
    return section


def markdown(ctx: Context, sections: list[Section], started: str, total: float) -> str:
    env = next((s.data for s in sections if s.name == "environment"), {})
    title = f"# zoo GPU check — {env.get('gpu', 'CPU dry run')} — {started}"
    lines = [title, "", f"{'DRY RUN on CPU with tiny sizes (the GPU figures need a GPU run)' if ctx.dry else 'GPU run'}; "
             f"total {total:.0f} s. Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), "",
             "| section | status | seconds (budget) | passed | failed | skipped |", "| --- | --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for s in sections:
        count = {r: sum(c["result"] == r for c in s.checks) for r in ("pass", "FAIL", "skipped")}
        lines.append(f"| {s.name} | {s.status} | {s.seconds:.1f} ({s.budget:.0f}) | {count['pass']} | {count['FAIL']} | {count['skipped']} |")
    for s in sections:
        lines += ["", f"## {s.name}: {s.status}", ""]
        if s.checks:
            lines += ["| check | result | detail |", "| --- | --- | --- |"]
            lines += [f"| {c['check']} | {c['result']} | {str(c['detail']).replace('|', '/')[:400]} |" for c in s.checks]
        if s.error:
            lines += ["", "```", s.error.strip(), "```"]
        for key, value in s.data.items():
            if key.endswith(" table"):
                lines += ["", value]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, same sections (CI runs this)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default $OUT, else benchmarks/results/gpu-check-<date>-<gpu>)")
    parser.add_argument("--sections", nargs="+", choices=[n for n, *_ in SECTIONS], default=[n for n, *_ in SECTIONS])
    parser.add_argument("--total-budget", type=float, default=None,
                        help="seconds for all sections after the imports (default 450 on a GPU, 600 dry): a section gets min(its budget, what is left)")
    parser.add_argument("--steps", type=int, default=None, help="steps per precision run (default 30 on a GPU, 2 dry)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or pass --dry-run to exercise the script on the CPU")
    if args.out is None and not os.environ.get("OUT"):
        # benchmarks/results/gpu-check-<date>-<gpu>: where a GPU report is kept in the repository
        tag = "dry-run" if args.dry_run else torch.cuda.get_device_name(0).replace("NVIDIA ", "").replace(" ", "-")
        args.out = ROOT / "benchmarks" / "results" / f"gpu-check-{datetime.date.today().isoformat()}-{tag}"
    out = args.out or Path(os.environ["OUT"])
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.dry_run else "cuda"
    if args.dry_run:
        # tiny models: one thread is fastest, and on a busy machine OpenMP threads that lose their core stall every
        # parallel region (a tiny step measured 10× slower with 2 threads than with 1 on a loaded 2-core machine)
        torch.set_num_threads(1)
    total_budget = args.total_budget or (600.0 if args.dry_run else 450.0)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    begin = time.perf_counter()
    sections: list[Section] = []
    missing = preload()
    if missing:
        print(f"[gpu_check] not importable: {missing}", flush=True)
    print(f"[gpu_check] imports done in {time.perf_counter() - begin:.1f} s", flush=True)
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-gpu-check-") as workdir:
        ctx = Context(args.dry_run, device, out, args.steps or (2 if args.dry_run else 30), Path(workdir))
        if ctx.cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        for name, fn, gpu_budget, dry_budget in SECTIONS:
            if name not in args.sections:
                continue
            left = total_budget - (time.perf_counter() - begin)
            budget = min(dry_budget if args.dry_run else gpu_budget, left)
            if budget < 1:
                section = Section(name, status="NOT RUN", error="the total budget was spent before this section")
            else:
                print(f"[gpu_check] {name} (budget {budget:.0f} s)", flush=True)
                section = run_section(ctx, name, fn, budget)
            sections.append(section)
            print(f"[gpu_check] {name}: {section.status} in {section.seconds:.1f} s", flush=True)
            # rewritten after every section: a run killed from outside still leaves the sections done so far
            total = time.perf_counter() - begin
            (out / "results.json").write_text(json.dumps(
                {"dry_run": ctx.dry, "started": started, "total_seconds": total,
                 "sections": [s.__dict__ for s in sections]}, indent=1, default=str))  # fmt: skip
            (out / "report.md").write_text(markdown(ctx, sections, started, total))
    print((out / "report.md").read_text())
    bad = [s.name for s in sections if s.status not in ("passed",)]
    print(f"[gpu_check] report: {out / 'report.md'}; sections not passed: {bad or 'none'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the embeddings of ``zoo predict`` to a safetensors file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from safetensors.torch import save

from zoo.atomic import check_writable, write_atomic


class EmbeddingWriter(BasePredictionWriter):
    """Collects ``predict_step`` outputs (``{"embedding", "label"?}``) and writes them at the end of prediction.

    ``output_path`` gets ``embedding`` [N, D] (fp32), ``index`` [N] (row in the predict dataset) and, when the data has
    labels, ``label`` [N], in loader order. With several ranks (each predicts its shard of the dataset) rank 0
    gathers every rank's rows and writes the one file, each sample once, in dataset order. The file is written to a
    temporary name and renamed, so an interrupted run never leaves a truncated file.

        zoo predict --config ... --ckpt_path last.ckpt \\
            --trainer.callbacks+=zoo.eval.EmbeddingWriter --trainer.callbacks.output_path=embeddings.safetensors
    """

    def __init__(self, output_path: str = "embeddings.safetensors") -> None:
        super().__init__(write_interval="epoch")
        self.output_path = Path(output_path)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        # fail before predicting (OSError naming the folder: one line from the CLI) rather than after it
        check_writable(self.output_path.parent)

    def write_on_epoch_end(self, trainer: Any, pl_module: Any, predictions: Sequence[Any], batch_indices: Sequence[Any]) -> None:
        # one loader gives a list of batch outputs, several a list of such lists: flatten to batches in loader order
        several = bool(predictions) and isinstance(predictions[0], list)
        outputs = [out for loader in predictions for out in loader] if several else list(predictions)
        # Lightning nests batch indices per loader even when there is only one
        nested = bool(batch_indices) and isinstance(batch_indices[0], list) and bool(batch_indices[0]) and isinstance(batch_indices[0][0], list)
        indices = [idx for loader in batch_indices for idx in loader] if nested else list(batch_indices)
        tensors: dict[str, torch.Tensor] = {}
        if outputs:
            tensors["embedding"] = torch.cat([o["embedding"].detach().float().cpu() for o in outputs])
            if all("label" in o for o in outputs):
                tensors["label"] = torch.cat([o["label"].detach().cpu() for o in outputs])
            if indices and all(idx is not None for idx in indices):
                # dataset row of each embedding: puts the ranks' shards (strided by the sampler) back in order
                tensors["index"] = torch.as_tensor([i for idx in indices for i in idx], dtype=torch.long)
        if trainer.world_size > 1:  # a rank may have no rows (fewer samples than ranks): it still joins the gather
            tensors = _gather_in_dataset_order(tensors, several)
            if trainer.global_rank != 0:
                return
        if not tensors:
            raise ValueError("EmbeddingWriter: prediction produced no batches; nothing to write")
        # serialised in memory, then written atomically with plain file I/O (zoo/atomic.py): a full disk raises an
        # OSError naming the file and leaves no partial file (safetensors' own writer reports an opaque error)
        data = save({k: v.contiguous() for k, v in tensors.items()}, metadata={"method": pl_module.method_name})
        write_atomic(self.output_path, data)


def _gather_in_dataset_order(tensors: dict[str, torch.Tensor], several_loaders: bool) -> dict[str, torch.Tensor]:
    """Every rank's rows on rank 0 (other ranks get ``{}``), sorted by dataset index, each index once: Lightning's
    predict sampler deals the rows out without repeats, and a sampler that pads (repeats rows) is undone here."""
    import torch.distributed as dist

    if several_loaders:  # every rank has the same loaders: all raise together
        raise ValueError("EmbeddingWriter: several predict loaders on several ranks are not supported; predict them one at a time")
    shards: list[dict[str, torch.Tensor]] | None = [{} for _ in range(dist.get_world_size())] if dist.get_rank() == 0 else None
    dist.gather_object(tensors, shards, dst=0)
    if shards is None:
        return {}
    shards = [shard for shard in shards if shard]
    if not shards:
        return {}
    keys = shards[0].keys()
    if "index" not in keys:
        raise ValueError("EmbeddingWriter: the predict loader gives no sample indices, so the ranks' rows cannot be put in order")
    if any(shard.keys() != keys for shard in shards):
        raise ValueError(f"EmbeddingWriter: the ranks' predictions have different keys: {[sorted(s) for s in shards]}")
    merged = {k: torch.cat([shard[k] for shard in shards]) for k in keys}
    order = torch.argsort(merged["index"], stable=True)
    index = merged["index"][order]
    first = torch.ones_like(index, dtype=torch.bool)
    first[1:] = index[1:] != index[:-1]
    return {k: v[order][first] for k, v in merged.items()}

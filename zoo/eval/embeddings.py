"""Write the embeddings of ``zoo predict`` to a safetensors file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from safetensors.torch import save

from zoo.atomic import check_writable, write_atomic


class EmbeddingWriter(BasePredictionWriter):
    """Collects ``predict_step`` outputs (``{"embedding", "label"?}``) and writes them at the end of prediction.

    ``output_path`` gets ``embedding`` [N, D] (fp32), ``index`` [N] (row in the predict dataset) and, when the data has
    labels, ``label`` [N], in loader order.
    With several ranks each writes ``<stem>.rank<r>.safetensors`` (the distributed sampler's shard). The file is
    written to a temporary name and renamed, so an interrupted run never leaves a truncated file.

        zoo predict --config ... --ckpt_path last.ckpt \\
            --trainer.callbacks+=zoo.eval.EmbeddingWriter --trainer.callbacks.output_path=embeddings.safetensors
    """

    def __init__(self, output_path: str = "embeddings.safetensors") -> None:
        super().__init__(write_interval="epoch")
        self.output_path = Path(output_path)

    def _path(self, trainer: Any) -> Path:
        path = self.output_path
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        # fail before predicting (OSError naming the folder: one line from the CLI) rather than after it
        check_writable(self._path(trainer).parent)

    def write_on_epoch_end(self, trainer: Any, pl_module: Any, predictions: Sequence[Any], batch_indices: Sequence[Any]) -> None:
        # one loader gives a list of batch outputs, several a list of such lists: flatten to batches in loader order
        several = bool(predictions) and isinstance(predictions[0], list)
        outputs = [out for loader in predictions for out in loader] if several else list(predictions)
        # Lightning nests batch indices per loader even when there is only one
        nested = bool(batch_indices) and isinstance(batch_indices[0], list) and bool(batch_indices[0]) and isinstance(batch_indices[0][0], list)
        indices = [idx for loader in batch_indices for idx in loader] if nested else list(batch_indices)
        if not outputs:
            raise ValueError("EmbeddingWriter: prediction produced no batches; nothing to write")
        tensors = {"embedding": torch.cat([o["embedding"].detach().float().cpu() for o in outputs])}
        if all("label" in o for o in outputs):
            tensors["label"] = torch.cat([o["label"].detach().cpu() for o in outputs])
        if indices and all(idx is not None for idx in indices):
            # dataset row of each embedding: puts per-rank shards (strided by the distributed sampler) back in order
            tensors["index"] = torch.as_tensor([i for idx in indices for i in idx], dtype=torch.long)
        # serialised in memory, then written atomically with plain file I/O (zoo/atomic.py): a full disk raises an
        # OSError naming the file and leaves no partial file (safetensors' own writer reports an opaque error)
        data = save({k: v.contiguous() for k, v in tensors.items()}, metadata={"method": pl_module.method_name})
        write_atomic(self._path(trainer), data)

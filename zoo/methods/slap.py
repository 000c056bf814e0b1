"""SLAP: Guinot et al., "SLAP: Siamese Language-Audio Pretraining without negative samples for music understanding"
(ISMIR 2025, arXiv 2506.17815). Reference code: Pliploop/SLAP (src/models/slap.py, src/utils/losses/byol.py)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.deprecation import renamed
from zoo.encoders.audio import AudioEncoder, AudioEncoderConfig
from zoo.encoders.text import RENAMED_KEYS as TEXT_RENAMED_KEYS
from zoo.encoders.text import TextEncoder, TextEncoderConfig
from zoo.eval.retrieval import ZERO_SHOT_PROMPTS, RetrievalCollector
from zoo.losses.clip import INIT_LOGIT_SCALE, symmetric_info_nce
from zoo.losses.slap import SLAP_INTER_WEIGHT, slap_loss
from zoo.methods.base import SSLOutput
from zoo.methods.momentum import MomentumMethod
from zoo.nn.audio_features import SLAP_SPEC_AUGMENT, SpecAugmentConfig, random_crops, spec_augment
from zoo.nn.heads import MLPHead
from zoo.nn.tokenizers import WordTokenizer
from zoo.registry import register_method
from zoo.validation import check_tensor, check_texts

LOSSES = ("slap", "infonce")


@register_method("slap")
class SLAP(MomentumMethod):
    """SLAP (Guinot et al. 2025, arXiv 2506.17815): audio–text BYOL without negatives. Each modality has an online
    arm (encoder → projector → predictor) and an EMA target arm (encoder → projector); predictions regress target
    projections across modalities and across two views of each modality.

    Algorithm: (clip, caption, caption′) → two random crops of the audio → log-mel (+ SpecAugment) on the device, and
    two token views (two captions of the clip, token dropout) → q_A, q_T (online) and z̄_A, z̄_T (target, stop-
    gradient) → L = λ(L_A→T + L_T→A) + (1 − λ)(L_A + L_T) (:func:`zoo.losses.slap.slap_loss`); then EMA of each
    arm. ``loss="infonce"`` trains the same encoders and projectors with CLAP's symmetric InfoNCE instead (no
    predictors, no targets): the contrastive baseline at equal budget.

    ``embed(audio)`` gives audio encoder features, ``embed_text(captions)`` text encoder features; the shared
    space used for retrieval and zero-shot is ``audio_space`` / ``text_space`` (normalised predictions q, as SLAP
    evaluates; projections z for ``infonce``).
    """

    min_batch_size = 2  # its batch-norm heads (and InfoNCE's negatives) need other samples
    #: filled in from the training data when the config leaves them None (see ``setup``)
    hparams_from_data = ("vocabulary", "class_names")

    input_key = "audio"
    renamed_args = {"projector_dim": "projector_out_dim"}

    def __init__(
        self,
        audio_encoder: AudioEncoderConfig | None = None,
        text_encoder: TextEncoderConfig | None = None,
        vocabulary: list[str] | None = None,
        class_names: list[str] | None = None,
        loss: str = "slap",
        inter_weight: float = SLAP_INTER_WEIGHT,
        projector_out_dim: int = 512,
        predictor_hidden_dim: int = 4096,
        predictor_dropout: float = 0.1,
        text_projector_batch_norm: bool = True,
        crop_seconds: float = 2.0,
        spec_augment: SpecAugmentConfig | None = None,
        token_dropout: float = 0.1,
        prompts: list[str] | None = None,
        ema_tau_base: float = 0.995,
        optimizer: str = "adamw",
        lr: float = 4e-4,
        weight_decay: float = 1e-2,
        warmup_epochs: float = 1.0,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            audio_encoder: log-mel + CNN spec (:class:`~zoo.encoders.audio.AudioEncoder`).
            text_encoder: small transformer spec (:class:`~zoo.encoders.text.TextEncoder`).
            vocabulary: word list of the text tokenizer (special tokens first). None: taken from the datamodule's
                train captions when fitting (``AudioTextDataModule.vocabulary()``) and stored here, so the saved
                config is self-contained.
            class_names: label names for zero-shot evaluation; None: taken from the datamodule when it has labels.
            loss: "slap" (the paper) or "infonce" (CLAP-style contrastive baseline, same networks minus predictors).
            inter_weight: λ, weight of the inter-modal terms (paper 0.5; collapses outside [0.2, 0.7]).
            projector_out_dim: projector MLP [in → d → d] (paper d = 512); BN + ReLU in the text projector when
                ``text_projector_batch_norm`` (the paper's code), ReLU only in the audio projector.
            predictor_hidden_dim, predictor_dropout: predictor MLP [d → 4096 → d] with ReLU, no BN (the paper's
                code) and dropout 0.1 on its input.
            crop_seconds: length of each of the two random audio crops.
            spec_augment: SpecAugment stripes on each view's log-mel; None gives SLAP's (2 × 64 frames, 2 × 8 bands);
                ``{}`` disables it.
            token_dropout: probability of replacing each token of a text view by ``[mask]``.
            prompts: zero-shot templates with ``{}`` for the class name (default: the paper's four).
            ema_tau_base: EMA τ at the start (0.995 in the paper's code), cosine to ``ema_tau_final``.
            optimizer, lr, weight_decay, warmup_epochs: AdamW with peak lr 4e-4 as in the paper, warm-up then cosine.
            **kwargs: the remaining args of :class:`~zoo.methods.momentum.MomentumMethod` / ``SSLMethod``.
        """
        # old names keep loading; the hparams (hence checkpoints and config.json) keep the new ones
        kwargs = renamed(kwargs, self.renamed_args, type(self).__name__)
        projector_out_dim = kwargs.pop("projector_out_dim", projector_out_dim)
        if text_encoder:
            text_encoder = renamed(text_encoder, TEXT_RENAMED_KEYS, f"{type(self).__name__} text_encoder")
        super().__init__(
            ema_tau_base=ema_tau_base, optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs
        )
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if not 0.0 <= inter_weight <= 1.0 or not 0.0 <= token_dropout < 1.0 or not 0.0 <= predictor_dropout < 1.0:
            raise ValueError(
                f"need 0 <= inter_weight <= 1, 0 <= token_dropout < 1, 0 <= predictor_dropout < 1; got {inter_weight}, "
                f"{token_dropout}, {predictor_dropout}"
            )
        if crop_seconds <= 0:
            raise ValueError(f"crop_seconds must be > 0, got {crop_seconds}")
        self.spec_augment_config: SpecAugmentConfig = dict(SLAP_SPEC_AUGMENT if spec_augment is None else spec_augment)  # type: ignore[assignment]
        self.audio_encoder = AudioEncoder(audio_encoder)
        self.audio_projector = MLPHead(self.audio_encoder.num_features, projector_out_dim, projector_out_dim, hidden_batch_norm=False)
        if loss == "slap":
            self.audio_predictor = self._predictor()
            self.target_audio_encoder = self.make_target(self.audio_encoder)
            self.target_audio_projector = self.make_target(self.audio_projector)
        else:
            # CLIP's learned temperature, as a log-scale
            self.log_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))
        self.crop_samples = int(round(crop_seconds * self.audio_encoder.log_mel.sample_rate))
        self.tokenizer: WordTokenizer | None = None
        self.text_encoder: TextEncoder | None = None
        if vocabulary is not None:
            self._build_text_arm(vocabulary)
        self.prompts = list(prompts or ZERO_SHOT_PROMPTS)
        self.retrieval = nn.ModuleDict({stage: RetrievalCollector() for stage in ("val", "test")})
        self.init_evaluation(self.audio_encoder.num_features)

    def _predictor(self) -> nn.Module:
        d = self.hparams.projector_out_dim
        return nn.Sequential(nn.Dropout(self.hparams.predictor_dropout), MLPHead(d, self.hparams.predictor_hidden_dim, d, hidden_batch_norm=False))

    def _build_text_arm(self, vocabulary: list[str]) -> None:
        hp = self.hparams
        self.tokenizer = WordTokenizer(vocabulary, max_length=int({"max_length": 32, **(hp.text_encoder or {})}["max_length"]))
        self.text_encoder = TextEncoder(len(vocabulary), hp.text_encoder)
        self.text_projector = MLPHead(self.text_encoder.num_features, hp.projector_out_dim, hp.projector_out_dim, hidden_batch_norm=hp.text_projector_batch_norm)
        if hp.loss == "slap":
            self.text_predictor = self._predictor()
            self.target_text_encoder = self.make_target(self.text_encoder)
            self.target_text_projector = self.make_target(self.text_projector)

    def setup(self, stage: str) -> None:
        # the vocabulary (and zero-shot class names) come from the training captions when the config has none; they
        # are written into the hparams, hence into checkpoints and the Hub config.json
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.text_encoder is None:
            if datamodule is None or not hasattr(datamodule, "vocabulary"):
                raise ValueError("SLAP has no vocabulary: pass vocabulary= or use a datamodule with vocabulary() (AudioTextDataModule)")
            vocabulary = datamodule.vocabulary()
            self.hparams.vocabulary = vocabulary
            self._build_text_arm(vocabulary)
        if self.hparams.class_names is None and getattr(datamodule, "class_names", None):
            self.hparams.class_names = list(datamodule.class_names)

    # ---- embeddings ---------------------------------------------------------------------------------------------
    def _text_ids(self, captions: list[str]) -> Tensor:
        if self.tokenizer is None:
            raise RuntimeError("SLAP's text arm is not built: it needs a vocabulary (from the config or a datamodule)")
        return self.tokenizer(captions, self.device)

    def embedding_encoder(self) -> torch.nn.Module:
        return self.audio_encoder

    def embed(self, audio: Tensor) -> Tensor:
        """Audio encoder features of float waveforms ``[B, samples]`` at the encoder's sample rate."""
        return self.audio_encoder(check_tensor(audio, f"{type(self).__name__}.embed", "waveforms [B, samples]", ndim=2))

    def embed_text(self, captions: list[str]) -> Tensor:
        """Text encoder features of a list of captions."""
        return self.text_encoder(self._text_ids(check_texts(captions, f"{type(self).__name__}.embed_text")))  # type: ignore[misc]

    def audio_space(self, audio: Tensor) -> Tensor:
        """Normalised audio embedding in the shared space (q for SLAP, z for InfoNCE)."""
        z = self.audio_projector(self.embed(audio))
        return F.normalize(self.audio_predictor(z) if self.hparams.loss == "slap" else z, dim=1)

    def text_space(self, captions: list[str]) -> Tensor:
        """Normalised text embedding in the shared space (q for SLAP, z for InfoNCE)."""
        z = self.text_projector(self.embed_text(captions))
        return F.normalize(self.text_predictor(z) if self.hparams.loss == "slap" else z, dim=1)

    # ---- inputs (on the device) -----------------------------------------------------------------------------------
    def make_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Two audio views (random crop → log-mel → SpecAugment) and two token views (the two captions of each clip,
        each token replaced by ``[mask]`` with p = token_dropout); view i from ``view_generator(i)``."""
        audio = []
        for v in range(2):
            generator = self.view_generator(v)
            mel = self.audio_encoder.log_mel(random_crops(batch["audio"], batch["audio_length"], self.crop_samples, generator))
            audio.append(spec_augment(mel, self.spec_augment_config, generator) if self.spec_augment_config else mel)
        text, p = [], self.hparams.token_dropout
        for v, captions in enumerate((batch["caption"], batch.get("caption2", batch["caption"]))):
            ids = self._text_ids(list(captions))
            if p > 0:
                drop = torch.rand(ids.shape, generator=self.view_generator(2 + v), device=ids.device) < p
                ids = torch.where(drop & (ids != self.tokenizer.pad_id), torch.full_like(ids, self.tokenizer.mask_id), ids)  # type: ignore[union-attr]
            text.append(ids)
        return {"views": {"audio": audio, "text": text}}

    # ---- training -------------------------------------------------------------------------------------------------
    def ssl_step(self, batch: dict[str, Any]) -> SSLOutput:
        views = batch["views"]
        mels, ids = torch.cat(views["audio"]), torch.cat(views["text"])
        n = views["audio"][0].shape[0]
        features = self.audio_encoder.features(mels)
        z_audio = self.audio_projector(features)
        z_text = self.text_projector(self.text_encoder(ids))  # type: ignore[misc]
        if self.hparams.loss == "infonce":
            a1, a2 = z_audio.split(n)
            t1, t2 = z_text.split(n)
            loss = 0.5 * (symmetric_info_nce(a1, t1, self.log_scale) + symmetric_info_nce(a2, t2, self.log_scale))
            return SSLOutput(loss=loss, features=features[:n], logs={"logit_scale": self.log_scale.detach().exp()})
        q_audio, q_text = self.audio_predictor(z_audio).split(n), self.text_predictor(z_text).split(n)
        with torch.no_grad():  # target arms: stop-gradient (BN in train mode, as the online arms)
            t_audio = self.target_audio_projector(self.target_audio_encoder.features(mels)).split(n)
            t_text = self.target_text_projector(self.target_text_encoder(ids)).split(n)
        loss, terms = slap_loss(q_audio, q_text, t_audio, t_text, self.hparams.inter_weight)  # type: ignore[arg-type]
        return SSLOutput(loss=loss, features=features[:n], logs={**terms, "ema_tau": torch.tensor(self.current_tau())})

    # ---- evaluation: retrieval, zero-shot, modality gap ---------------------------------------------------------
    def _evaluation_step(self, batch: dict[str, Any], dataloader_idx: int, stage: str) -> None:
        super()._evaluation_step(batch, dataloader_idx, stage)
        if dataloader_idx == 0 and self._has_knn_bank(stage):
            return
        self.retrieval[stage].update(self.audio_space(batch["audio"]), self.text_space(batch["caption"]), batch.get("label"))

    def _log_evaluation(self, stage: str) -> None:
        super()._log_evaluation(stage)
        collector: RetrievalCollector = self.retrieval[stage]  # type: ignore[assignment]
        if collector.update_count == 0:
            return
        classes = None
        if self.hparams.class_names:
            with torch.no_grad():
                classes = [self.text_space([p.format(name) for name in self.hparams.class_names]) for p in self.prompts]
        for name, value in collector.compute(classes).items():
            self.log(f"{stage}/{name}", value)
        collector.reset()

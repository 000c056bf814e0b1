import pytest
import torch

import zoo
from zoo.methods.tjepa import TJEPA

SCHEMA = {"numeric": ["a", "b", "c"], "categorical": ["d", "e"], "cardinalities": [4, 3]}
TINY = dict(encoder={"dim": 16, "depth": 1, "heads": 2, "ff_dim": 16, "num_reg_tokens": 2}, predictor_dim=8, predictor_depth=1)


def rows(n: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.cat([torch.rand(n, 3, generator=g), torch.randint(0, 3, (n, 2), generator=g).float()], dim=1)


def test_ssl_step_trains_context_encoder_and_predictor_but_not_the_target():
    torch.manual_seed(0)
    model = TJEPA(feature_schema=SCHEMA, num_classes=2, **TINY)
    batch = {"features": rows(), **model.make_inputs({"features": rows()})}
    masks = batch["masks"]
    assert masks.context.shape[0] == 12 and (masks.context[:, :2] == torch.tensor([0, 1])).all()  # [REG] always seen
    assert masks.targets.shape[:2] == (4, 12) and (masks.targets >= 2).all()
    out = model.ssl_step(batch)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out.loss > 0
    assert out.features.shape == (12, 16)
    out.loss.backward()
    assert model.encoder.tokenizer.numeric_weight.grad.abs().sum() > 0
    assert model.predictor.mask_token.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.target_encoder.parameters())
    # at initialisation the target is a copy of the context encoder: embeddings agree
    torch.testing.assert_close(model.embed(rows()), model.encoder(rows()).mean(1))
    assert model.embed_tokens(rows()).shape == (12, 2 + 5, 16)


def test_ema_momentum_is_linear_and_config_errors_are_clear():
    assert TJEPA(feature_schema=SCHEMA, **TINY).hparams.ema_tau_schedule == "linear"
    with pytest.raises(ValueError, match="needs feature_schema"):
        TJEPA(**TINY)
    with pytest.raises(ValueError, match="at least 2 features"):
        TJEPA(feature_schema={"numeric": ["a"], "categorical": [], "cardinalities": []}, **TINY)


def test_hub_round_trip_gives_identical_embeddings(tmp_path):
    torch.manual_seed(1)
    model = TJEPA(feature_schema=SCHEMA, **TINY).eval()
    model.save_pretrained(tmp_path / "hub")
    loaded = zoo.from_pretrained(tmp_path / "hub")
    assert isinstance(loaded, TJEPA) and loaded.hparams.feature_schema == SCHEMA
    with torch.no_grad():
        assert torch.equal(loaded.embed(rows()), model.embed(rows()))

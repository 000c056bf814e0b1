"""Old config names keep loading under their new names (zoo.deprecation.renamed), with a FutureWarning each."""

import pytest
import torch
from torch import nn

from tests.method_cases import SLAP_TINY
from zoo.deprecation import renamed
from zoo.encoders.skeleton import SkeletonEncoder
from zoo.encoders.tabular import TabularTransformer
from zoo.encoders.text import TextEncoder
from zoo.methods.slap import SLAP


def test_renamed_moves_old_keys_and_warns_naming_both():
    with pytest.warns(FutureWarning, match=r"^text encoder: 'dim' is now 'embed_dim'$"):
        assert renamed({"dim": 8, "depth": 1}, {"dim": "embed_dim"}, "text encoder") == {"depth": 1, "embed_dim": 8}
    assert renamed(None, {"dim": "embed_dim"}, "x") == {}
    with pytest.raises(ValueError, match="give only 'embed_dim'"):
        renamed({"dim": 8, "embed_dim": 8}, {"dim": "embed_dim"}, "x")


ENCODERS = {
    "text": (lambda c: TextEncoder(20, c), {"dim": 16, "heads": 4}, {"embed_dim": 16, "num_heads": 4}),
    "tabular": (lambda c: TabularTransformer(2, [3], {"depth": 1, **c}), {"dim": 16, "heads": 4}, {"embed_dim": 16, "num_heads": 4}),
    "skeleton": (SkeletonEncoder, {"hidden_dim": 8, "num_layers": 2}, {"embed_dim": 8, "depth": 2}),
}


@pytest.mark.parametrize("kind", ENCODERS)
def test_an_encoder_from_old_names_is_the_one_from_the_new_names(kind):
    build, old, new = ENCODERS[kind]
    torch.manual_seed(0)
    with pytest.warns(FutureWarning, match=f"{kind} encoder: '{next(iter(old))}' is now '{next(iter(new))}'"):
        from_old = build(old)
    torch.manual_seed(0)
    from_new = build(new)
    assert from_old.num_features == from_new.num_features == new["embed_dim"]
    state = from_new.state_dict()
    assert state.keys() == from_old.state_dict().keys()
    assert all(torch.equal(v, state[k]) for k, v in from_old.state_dict().items())
    heads = [m.num_heads for m in from_old.modules() if isinstance(m, nn.MultiheadAttention)]
    assert heads == [m.num_heads for m in from_new.modules() if isinstance(m, nn.MultiheadAttention)]


def test_slap_projector_dim_is_now_projector_out_dim():
    config = {k: v for k, v in SLAP_TINY.items() if k != "projector_out_dim"}
    with pytest.warns(FutureWarning, match="SLAP: 'projector_dim' is now 'projector_out_dim'"):
        model = SLAP(**config, projector_dim=12)
    assert model.hparams.projector_out_dim == 12 and "projector_dim" not in model.hparams
    assert model.audio_projector(torch.randn(2, model.audio_encoder.num_features)).shape == (2, 12)

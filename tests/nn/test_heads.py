import pytest
import torch
from torch import nn

from zoo.nn.heads import MLPHead


def test_simclr_v1_projector_layout():
    head = MLPHead(32, 32, 8, num_layers=2, last_batch_norm=True)
    kinds = [type(m) for m in head]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d]
    assert head[0].bias is not None and head[3].bias is None  # last Linear has no bias before BN
    assert head(torch.randn(4, 32)).shape == (4, 8)


def test_last_batch_norm_has_no_trainable_shift():
    head = MLPHead(6, 6, 4, num_layers=2, last_batch_norm=True)
    out = head(torch.randn(16, 6))
    out.pow(2).sum().backward()
    bn = head[-1]
    assert not bn.bias.requires_grad and bn.bias.grad is None and torch.all(bn.bias == 0)
    # BN without β centres each output dimension in training mode
    torch.testing.assert_close(out.mean(0), torch.zeros(4), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layers", [1, 3])
def test_depth(layers):
    head = MLPHead(5, 7, 3, num_layers=layers)
    assert sum(isinstance(m, nn.Linear) for m in head) == layers
    assert head(torch.randn(2, 5)).shape == (2, 3)


def test_zero_layers_rejected():
    with pytest.raises(ValueError, match="num_layers"):
        MLPHead(4, 4, 4, num_layers=0)

import torch

from tests.method_cases import with_inputs
from zoo.losses.nt_xent import nt_xent_loss
from zoo.methods.simclr import SimCLR


def test_ssl_step_is_nt_xent_of_projected_views(tiny_encoder):
    torch.manual_seed(0)
    model = SimCLR(encoder=tiny_encoder, temperature=0.3, projector_out_dim=16)
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    view1, view2 = model.make_inputs({"image": images})["views"]
    assert view1.shape == (6, 1, 8, 8) and view1.dtype == torch.float32
    assert not torch.equal(view1, view2)  # independent per-view randomness
    out = model.ssl_step({"image": images, "views": [view1, view2]})
    # one encoder pass over both views: BN statistics are shared across views, as in the reference implementation
    features = model.encoder(torch.cat([view1, view2]))
    z1, z2 = model.projector(features).split(6)
    torch.testing.assert_close(out.loss, nt_xent_loss(z1, z2, temperature=0.3))
    torch.testing.assert_close(out.features, features[:6])


def test_views_are_deterministic_given_the_seed(tiny_encoder):
    model = SimCLR(encoder=tiny_encoder)
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    a, b = model.make_inputs({"image": images})["views"], model.make_inputs({"image": images})["views"]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_training_reduces_the_loss_on_a_fixed_batch(tiny_encoder):
    torch.manual_seed(0)
    model = SimCLR(encoder=tiny_encoder, projector_out_dim=16)
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    batch = with_inputs(model, {"image": images})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = model.ssl_step(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3


def test_bf16_autocast_step_is_finite_and_close_to_fp32(tiny_encoder):
    torch.manual_seed(0)
    model = SimCLR(encoder=tiny_encoder, projector_out_dim=16)
    images = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8)
    batch = with_inputs(model, {"image": images})
    reference = model.ssl_step(batch).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.ssl_step(batch).loss
    assert loss.dtype == torch.float32 and torch.isfinite(loss)  # NT-Xent runs in fp32 inside autocast
    assert abs(loss.item() - reference.item()) < 0.05 * reference.item()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_bf16_true_weights_accept_uint8_and_fp32_views(tiny_encoder):
    model = SimCLR(encoder=tiny_encoder).to(torch.bfloat16).eval()
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    assert model.embed(images).dtype == torch.bfloat16
    assert model.embed(model.make_inputs({"image": images})["views"][0]).shape == (4, 64)

"""DiT: shapes at any length, positions matter, timestep and condition reach the output."""

from __future__ import annotations

import pytest
import torch

from hireslm.models import MODELS, build_model
from hireslm.models.dit import DiT
from hireslm.models.dit.layers import apply_rotary, rotary_tables

TINY = dict(latent_channels=4, cond_channels=3, hidden_dim=32, depth=2, num_heads=2)


def _randomised(model: DiT, seed: int = 0) -> DiT:
    """Zero-initialised layers make a fresh DiT output zeros; give every weight a value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def _inputs(b: int, length: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 4, length, generator=g), torch.rand(b, generator=g) * 1000,
            torch.randn(b, 3, length, generator=g))


def test_fresh_model_predicts_zero() -> None:
    x, t, c = _inputs(2, 10)
    out = DiT(**TINY)(x, t, c)
    assert out.shape == (2, 4, 10)
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("length", [1, 2, 7, 25, 64])
def test_shapes_any_length(length: int) -> None:
    model = _randomised(DiT(**TINY))
    x, t, c = _inputs(3, length)
    out = model(x, t, c)
    assert out.shape == (3, 4, length) and torch.isfinite(out).all()


def test_longer_than_training_length_after_training() -> None:
    """Trained on 16 frames, it runs at 100 frames and its output there is finite."""
    torch.manual_seed(0)
    model = DiT(**TINY)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, t, c = _inputs(2, 16)
    for _ in range(5):
        loss = (model(x, t, c) - x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, t, c = _inputs(1, 100, seed=1)
    out = model.eval()(x, t, c)
    assert out.shape == (1, 4, 100) and torch.isfinite(out).all()
    assert out.abs().sum() > 0


def test_positions_matter() -> None:
    """Permuting frames does not simply permute the output: RoPE makes the model see order.

    A model without positions would be permutation-equivariant (everything else is per-token).
    """
    model = _randomised(DiT(**TINY))
    x, t, c = _inputs(1, 12)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    out = model(x, t, c)
    out_perm = model(x[..., perm], t, c[..., perm])
    assert not torch.allclose(out[..., perm], out_perm, atol=1e-4)


def test_rotary_is_relative() -> None:
    """After RoPE, a query-key dot product depends only on the distance of their positions."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(8, generator=g).expand(1, 1, 20, 8)
    k = torch.randn(8, generator=g).expand(1, 1, 20, 8)
    cos, sin = rotary_tables(20, 8, 10000.0, q.device)
    qr, kr = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    torch.testing.assert_close((qr[..., 2, :] * kr[..., 6, :]).sum(),
                               (qr[..., 9, :] * kr[..., 13, :]).sum())
    assert not torch.allclose((qr[..., 2, :] * kr[..., 6, :]).sum(),
                              (qr[..., 2, :] * kr[..., 9, :]).sum())


def test_timestep_and_condition_change_output() -> None:
    model = _randomised(DiT(**TINY))
    x, t, c = _inputs(2, 9)
    base = model(x, t, c)
    assert not torch.allclose(base, model(x, t + 100, c))
    assert not torch.allclose(base, model(x, t, c + 1))
    # scalar timestep broadcasts to the batch
    assert model(x, torch.tensor(500.0), c).shape == base.shape


def test_batch_items_are_independent() -> None:
    model = _randomised(DiT(**TINY))
    x, t, c = _inputs(3, 11)
    full = model(x, t, c)
    single = model(x[1:2], t[1:2], c[1:2])
    torch.testing.assert_close(full[1:2], single, atol=1e-5, rtol=1e-5)


def test_bad_input_raises() -> None:
    model = DiT(**TINY)
    x, t, c = _inputs(2, 8)
    with pytest.raises(ValueError, match="x_t"):
        model(x[:, :3], t, c)
    with pytest.raises(ValueError, match="cond"):
        model(x, t, c[..., :7])
    with pytest.raises(ValueError, match="timestep"):
        model(x, t[:1], c)
    with pytest.raises(ValueError, match="heads"):
        DiT(**{**TINY, "num_heads": 3})


def test_gradients_and_build_round_trip() -> None:
    model = build_model("dit", TINY)
    assert isinstance(model, MODELS["dit"])
    x, t, c = _inputs(2, 6)
    model(x, t, c).sum().backward()
    # adaLN-zero: only the zero-initialised output layer gets gradient at step 0.
    assert model.final.linear.weight.grad.abs().sum() > 0
    clone = build_model("dit", TINY)
    _randomised(model)
    clone.load_state_dict(model.state_dict(), strict=True)
    torch.testing.assert_close(clone.eval()(x, t, c), model(x, t, c))


def test_cond_dropout_drops_whole_rows_in_training_only() -> None:
    model = _randomised(DiT(**TINY, cond_dropout=0.5))
    x_t, t, cond = _inputs(64, 6)
    with torch.no_grad():
        kept, dropped = model(x_t, t, cond), model(x_t, t, torch.zeros_like(cond))
        model.train()
        torch.manual_seed(1)
        trained = model(x_t, t, cond)
    as_dropped = (trained - dropped).abs().amax(dim=(1, 2)) < 1e-6
    as_kept = (trained - kept).abs().amax(dim=(1, 2)) < 1e-6
    assert bool((as_dropped ^ as_kept).all())  # each row: all of its condition, or none
    assert 16 <= int(as_dropped.sum()) <= 48  # about half of 64
    model.cond_dropout = 1.0
    with torch.no_grad():
        torch.testing.assert_close(model(x_t, t, cond), dropped)

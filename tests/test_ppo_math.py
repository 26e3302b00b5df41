"""rlhfpipe.training.ppo_math against hand-computed values and naive numpy / plain-torch oracles.

Every expected number below is either worked out by hand in the comment next to it or comes from an
independent naive implementation (explicit loops over python floats / numpy), never from the function
under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlhfpipe.training.ppo_math import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    entropy_from_logits,
    first_true_indices,
    kl_estimate,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
    policy_loss,
    token_rewards,
    truncate_after_eos,
    value_loss,
)

EOS, PAD = 2, 0


def t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


def close(actual: torch.Tensor, expected, atol: float = 1e-6, rtol: float = 0.0) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype) if not torch.is_tensor(expected) else expected
    torch.testing.assert_close(actual, expected.to(actual.dtype), atol=atol, rtol=rtol)


# ---------------------------------------------------------------------------------------------------- GAE


def gae_oracle(values: np.ndarray, rewards: np.ndarray, lengths: list[int], gamma: float, lam: float):
    """Naive double loop: A_t = sum_{k=t}^{L-1} (gamma*lam)^(k-t) delta_k, delta_k = r_k + gamma V_{k+1} - V_k,
    with V_L := 0 (nothing after the last real token). Padding positions (t >= L) get 0."""
    B, T = values.shape
    adv = np.zeros((B, T), dtype=np.float64)
    ret = np.zeros((B, T), dtype=np.float64)
    for b in range(B):
        L = lengths[b]
        for s in range(L):
            total = 0.0
            for k in range(s, L):
                v_next = values[b, k + 1] if k + 1 < L else 0.0
                delta = rewards[b, k] + gamma * v_next - values[b, k]
                total += (gamma * lam) ** (k - s) * delta
            adv[b, s] = total
            ret[b, s] = total + values[b, s]
    return adv, ret


def test_gae_hand_gamma_1():
    # V = [0.5, 1.0, 1.5], r = [0, 0, 1], gamma = 1, lam = 0.95
    # t=2: delta = 1 + 0   - 1.5 = -0.5            A2 = -0.5
    # t=1: delta = 0 + 1.5 - 1.0 =  0.5            A1 = 0.5 + 0.95 * -0.5  = 0.025
    # t=0: delta = 0 + 1.0 - 0.5 =  0.5            A0 = 0.5 + 0.95 * 0.025 = 0.52375
    # returns = A + V = [1.02375, 1.025, 1.0]
    adv, ret = compute_gae(t([[0.5, 1.0, 1.5]]), t([[0.0, 0.0, 1.0]]), t([[1, 1, 1]]), gamma=1.0, lam=0.95)
    close(adv, [[0.52375, 0.025, -0.5]])
    close(ret, [[1.02375, 1.025, 1.0]])


def test_gae_hand_gamma_below_1():
    # V = [0.5, 1.0, 1.5], r = [0, 0, 1], gamma = 0.9, lam = 0.5  (gamma*lam = 0.45)
    # t=2: delta = 1 + 0         - 1.5 = -0.5      A2 = -0.5
    # t=1: delta = 0 + 0.9 * 1.5 - 1.0 =  0.35     A1 = 0.35 + 0.45 * -0.5  = 0.125
    # t=0: delta = 0 + 0.9 * 1.0 - 0.5 =  0.4      A0 = 0.4  + 0.45 * 0.125 = 0.45625
    # returns = A + V = [0.95625, 1.125, 1.0]
    adv, ret = compute_gae(t([[0.5, 1.0, 1.5]]), t([[0.0, 0.0, 1.0]]), t([[1, 1, 1]]), gamma=0.9, lam=0.5)
    close(adv, [[0.45625, 0.125, -0.5]])
    close(ret, [[0.95625, 1.125, 1.0]])


def test_gae_masked_row_ends_at_t1():
    # Response ended at t=1 (EOS there); positions 2,3 are padding holding junk values/rewards that must be ignored.
    # V = [0.5, 1.0, (9), (9)], r = [0, 2, (5), (5)], gamma = 1, lam = 0.95
    # t=1: delta = 2 + 0 (no V past the end) - 1.0 = 1.0       A1 = 1.0
    # t=0: delta = 0 + 1.0 - 0.5 = 0.5                         A0 = 0.5 + 0.95 * 1.0 = 1.45
    # returns = [1.45 + 0.5, 1.0 + 1.0, 0, 0] = [1.95, 2.0, 0, 0]
    # Second row: a full-length row in the same batch, V = 0, r = [0, 0, 0, 1] -> A_t = 0.95^(3-t), returns = A.
    values = t([[0.5, 1.0, 9.0, 9.0], [0.0, 0.0, 0.0, 0.0]])
    rewards = t([[0.0, 2.0, 5.0, 5.0], [0.0, 0.0, 0.0, 1.0]])
    mask = t([[1, 1, 0, 0], [1, 1, 1, 1]], torch.long)
    adv, ret = compute_gae(values, rewards, mask, gamma=1.0, lam=0.95)
    close(adv, [[1.45, 1.0, 0.0, 0.0], [0.857375, 0.9025, 0.95, 1.0]])
    close(ret, [[1.95, 2.0, 0.0, 0.0], [0.857375, 0.9025, 0.95, 1.0]])


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.99, 0.9), (0.5, 1.0), (1.0, 0.0)])
def test_gae_matches_numpy_oracle_random(gamma, lam):
    rng = np.random.default_rng(0)
    B, T = 6, 9
    values = rng.normal(size=(B, T))
    rewards = rng.normal(size=(B, T))
    lengths = [1, T, 4, 2, T - 1, 5]
    mask = np.array([[1 if s < L else 0 for s in range(T)] for L in lengths])
    adv, ret = compute_gae(torch.from_numpy(values), torch.from_numpy(rewards), torch.from_numpy(mask), gamma, lam)
    adv_ref, ret_ref = gae_oracle(values, rewards, lengths, gamma, lam)
    np.testing.assert_allclose(adv.numpy(), adv_ref, atol=1e-10, rtol=0)
    np.testing.assert_allclose(ret.numpy(), ret_ref, atol=1e-10, rtol=0)


# ---------------------------------------------------------------------------------- masked statistics

X = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
M = [[1, 1, 0], [1, 0, 0]]  # selects 1, 2, 4


def test_masked_mean_hand():
    # (1 + 2 + 4) / 3 = 7/3 ; per row: (1+2)/2 = 1.5, 4/1 = 4
    close(masked_mean(t(X), t(M)), 7 / 3)
    close(masked_mean(t(X), t(M), dim=1), [1.5, 4.0])
    close(masked_mean(t(X), t(M, torch.long)), 7 / 3)


def test_masked_var_hand_biased_and_unbiased():
    # deviations from 7/3: -4/3, -1/3, 5/3 ; squares 16/9 + 1/9 + 25/9 = 42/9
    # biased = 42/9 / 3 = 14/9 ; unbiased = 42/9 / 2 = 7/3
    close(masked_var(t(X), t(M), unbiased=False), 14 / 9)
    close(masked_var(t(X), t(M), unbiased=True), 7 / 3)
    close(masked_var(t(X), t(M, torch.long)), 7 / 3)


def test_masked_var_matches_numpy_random():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 7))
    m = (rng.random((5, 7)) < 0.6).astype(np.int64)
    sel = x[m.astype(bool)]
    np.testing.assert_allclose(masked_var(torch.from_numpy(x), torch.from_numpy(m), unbiased=True).item(),
                               sel.var(ddof=1), rtol=1e-12)
    np.testing.assert_allclose(masked_var(torch.from_numpy(x), torch.from_numpy(m), unbiased=False).item(),
                               sel.var(ddof=0), rtol=1e-12)
    np.testing.assert_allclose(masked_mean(torch.from_numpy(x), torch.from_numpy(m)).item(), sel.mean(), rtol=1e-12)


def test_masked_whiten_matches_numpy_on_selected():
    rng = np.random.default_rng(2)
    x = rng.normal(loc=3.0, scale=2.5, size=(4, 8))
    m = (rng.random((4, 8)) < 0.5).astype(np.int64)
    m[0, 0] = m[0, 1] = 1
    sel = m.astype(bool)
    w = masked_whiten(torch.from_numpy(x), torch.from_numpy(m)).numpy()
    expected = (x[sel] - x[sel].mean()) / np.sqrt(x[sel].var(ddof=1) + 1e-8)
    np.testing.assert_allclose(w[sel], expected, atol=1e-9)
    assert abs(w[sel].mean()) < 1e-9
    np.testing.assert_allclose(w[sel].std(ddof=1), 1.0, atol=1e-6)
    assert (w[~sel] == 0).all()

    kept = masked_whiten(torch.from_numpy(x), torch.from_numpy(m), shift_mean=False).numpy()
    np.testing.assert_allclose(kept[sel], expected + x[sel].mean(), atol=1e-9)
    np.testing.assert_allclose(kept[sel].mean(), x[sel].mean(), atol=1e-9)  # the mean is kept
    np.testing.assert_allclose(kept[sel].std(ddof=1), 1.0, atol=1e-6)
    assert (kept[~sel] == 0).all()


def test_masked_whiten_hand():
    # selected 1, 2, 4: mean 7/3, unbiased var 7/3 -> std sqrt(7/3) = 1.527525...
    # whitened: (1 - 7/3)/1.5275 = -0.872872, (2 - 7/3)/1.5275 = -0.218218, (4 - 7/3)/1.5275 = 1.091089
    w = masked_whiten(t(X), t(M))
    s = math.sqrt(7 / 3)
    close(w, [[(1 - 7 / 3) / s, (2 - 7 / 3) / s, 0.0], [(4 - 7 / 3) / s, 0.0, 0.0]], atol=1e-5)
    close(w, [[-0.872872, -0.218218, 0.0], [1.091089, 0.0, 0.0]], atol=1e-5)
    # shift_mean=False adds 7/3 back on the selected entries only
    close(masked_whiten(t(X), t(M), shift_mean=False),
          [[-0.872872 + 7 / 3, -0.218218 + 7 / 3, 0.0], [1.091089 + 7 / 3, 0.0, 0.0]], atol=1e-5)


def test_masked_whiten_single_selected_entry_is_finite():
    # One selected value: variance falls back to biased (= 0) instead of raising; (x - mean) = 0 -> 0.
    w = masked_whiten(t([[3.0, 7.0]]), t([[1, 0]]))
    close(w, [[0.0, 0.0]])


def test_empty_mask_raises():
    x, empty = t(X), torch.zeros(2, 3)
    with pytest.raises(ValueError):
        masked_mean(x, empty)
    with pytest.raises(ValueError):
        masked_var(x, empty, unbiased=True)
    with pytest.raises(ValueError):
        masked_var(x, empty, unbiased=False)
    with pytest.raises(ValueError):
        masked_whiten(x, empty)
    with pytest.raises(ValueError):  # unbiased variance of a single value is undefined
        masked_var(x, t([[1, 0, 0], [0, 0, 0]]), unbiased=True)


# -------------------------------------------------------------------------------------------- KL


def test_kl_estimators_hand():
    # logp = log 0.5, ref = log 0.25: k1 = log 0.5 - log 0.25 = log 2 = 0.693147
    # r = q/p = 0.25/0.5 = 0.5: k3 = (r - 1) - log r = -0.5 + log 2 = 0.193147
    # swapped (logp = log 0.25, ref = log 0.5): k1 = -log 2 ; r = 2: k3 = 1 - log 2 = 0.306853
    logp = t([math.log(0.5), math.log(0.25)])
    ref = t([math.log(0.25), math.log(0.5)])
    close(kl_estimate(logp, ref, "k1"), [math.log(2), -math.log(2)])
    close(kl_estimate(logp, ref), [0.693147, -0.693147], atol=1e-6)  # k1 is the default
    close(kl_estimate(logp, ref, "k3"), [-0.5 + math.log(2), 1 - math.log(2)])
    close(kl_estimate(logp, ref, "k3"), [0.193147, 0.306853], atol=1e-6)


def test_kl_estimators_zero_when_equal_and_k3_nonnegative():
    g = torch.Generator().manual_seed(3)
    logp = -torch.rand(4, 16, generator=g) * 5
    ref = -torch.rand(4, 16, generator=g) * 5
    close(kl_estimate(logp, logp.clone(), "k1"), torch.zeros(4, 16), atol=0)
    close(kl_estimate(logp, logp.clone(), "k3"), torch.zeros(4, 16), atol=0)
    k3 = kl_estimate(logp, ref, "k3")
    assert (k3 >= 0).all()
    assert (k3 > 0).any()
    k1 = kl_estimate(logp, ref, "k1")
    assert (k1 < 0).any()  # k1 can go negative; k3 cannot
    # k3 per token from plain python: r = exp(ref - logp); (r - 1) - log r
    expected = [[(math.exp(b - a) - 1) - (b - a) for a, b in zip(ra, rb)] for ra, rb in zip(logp.tolist(), ref.tolist())]
    close(k3, expected, atol=1e-6, rtol=1e-5)


def test_kl_unknown_estimator_raises():
    with pytest.raises(ValueError):
        kl_estimate(t([0.0]), t([0.0]), "k2")


# --------------------------------------------------------------------------------- KL controllers


def test_adaptive_kl_controller_above_target_clipped():
    # e = clip(9/6 - 1, -0.2, 0.2) = clip(0.5) = 0.2 ; beta = 0.1 * (1 + 0.2 * 64/10000) = 0.1 * 1.00128 = 0.100128
    c = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    c.update(9.0, n_steps=64)
    assert c.value == pytest.approx(0.100128, abs=1e-12)
    # a second identical update compounds: 0.100128 * 1.00128 = 0.10025616384
    c.update(9.0, n_steps=64)
    assert c.value == pytest.approx(0.10025616384, abs=1e-12)


def test_adaptive_kl_controller_below_target_decreases():
    # e = clip(3/6 - 1) = clip(-0.5) = -0.2 ; beta = 0.1 * (1 - 0.2 * 64/10000) = 0.1 * 0.99872 = 0.099872
    c = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    c.update(3.0, n_steps=64)
    assert c.value == pytest.approx(0.099872, abs=1e-12)


def test_adaptive_kl_controller_unclipped_error():
    # e = 6.6/6 - 1 = 0.1 (inside the clip) ; beta = 0.1 * (1 + 0.1 * 64/10000) = 0.1 * 1.00064 = 0.100064
    c = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    c.update(6.6, n_steps=64)
    assert c.value == pytest.approx(0.100064, abs=1e-12)
    # on target: e = 0 -> unchanged
    c2 = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    c2.update(6.0, n_steps=64)
    assert c2.value == pytest.approx(0.1, abs=1e-15)


def test_fixed_kl_controller_unchanged():
    c = FixedKLController(0.05)
    for kl in (0.0, 9.0, 1e6):
        c.update(kl, n_steps=64)
    assert c.value == 0.05


# -------------------------------------------------------------------------------------- policy loss


def test_policy_loss_hand():
    # cliprange 0.2 -> clip range [0.8, 1.2]; old logprobs 0, new = log(ratio)
    #  a: r=1.1, A=+1 : -A r = -1.1, -A clip(r) = -1.1          -> max -1.1  (inside the range, not clipped)
    #  b: r=1.5, A=+2 : -A r = -3.0, -A clip(r) = -2*1.2 = -2.4 -> max -2.4  (clipped: 2nd > 1st)
    #  c: r=0.5, A=-1 : -A r =  0.5, -A clip(r) = 0.8           -> max  0.8  (clipped)
    #  d: r=0.5, A=+1 : -A r = -0.5, -A clip(r) = -0.8          -> max -0.5  (pessimistic: unclipped term wins)
    #  e: padding (r=3, A=100) must not count
    # pg_loss = (-1.1 - 2.4 + 0.8 - 0.5) / 4 = -3.2 / 4 = -0.8 ; clipfrac = 2/4 = 0.5
    # ratio mean = (1.1 + 1.5 + 0.5 + 0.5)/4 = 0.9
    # approxkl = mean((r-1) - log r) = [(0.1 - ln1.1) + (0.5 - ln1.5) + 2*(-0.5 + ln2)] / 4
    #          = [0.0046898 + 0.0945349 + 2*0.1931472] / 4 = 0.4855191 / 4 = 0.1213798
    ratios = [[1.1, 1.5, 0.5], [0.5, 3.0, 3.0]]
    logprobs = t([[math.log(r) for r in row] for row in ratios])
    old = torch.zeros(2, 3)
    adv = t([[1.0, 2.0, -1.0], [1.0, 100.0, 100.0]])
    mask = t([[1, 1, 1], [1, 0, 0]])
    loss, stats = policy_loss(logprobs, old, adv, mask, cliprange=0.2)
    close(loss, -0.8, atol=1e-6)
    close(stats["clipfrac"], 0.5)
    close(stats["ratio"], 0.9, atol=1e-6)
    close(stats["approxkl"], 0.1213798, atol=1e-6)
    approxkl_py = ((0.1 - math.log(1.1)) + (0.5 - math.log(1.5)) + 2 * (-0.5 + math.log(2))) / 4
    close(stats["approxkl"], approxkl_py, atol=1e-6)


def test_policy_loss_at_ratio_one():
    g = torch.Generator().manual_seed(4)
    logprobs = -torch.rand(3, 5, generator=g) * 4
    adv = torch.randn(3, 5, generator=g)
    mask = t([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    loss, stats = policy_loss(logprobs, logprobs.clone(), adv, mask, cliprange=0.2)
    sel = [a for a_row, m_row in zip(adv.tolist(), mask.tolist()) for a, m in zip(a_row, m_row) if m]
    close(loss, -sum(sel) / len(sel), atol=1e-6)  # -mean(A) over the 8 real tokens
    close(stats["approxkl"], 0.0, atol=0)
    close(stats["clipfrac"], 0.0, atol=0)
    close(stats["ratio"], 1.0, atol=0)


# -------------------------------------------------------------------------------------- value loss


def test_value_loss_hand_with_clipping():
    # cliprange_value 0.2
    #  a: V=1.0, V_old=0.9, R=2.0 : V-V_old = 0.1 inside, Vc = 1.0 ; l1 = l2 = 1.0      -> 1.0  (not clipped)
    #  b: V=1.5, V_old=1.0, R=2.0 : Vc = 1.2 ; l1 = 0.25, l2 = (1.2-2)^2 = 0.64          -> 0.64 (clipped)
    #  c: V=1.5, V_old=1.0, R=1.0 : Vc = 1.2 ; l1 = 0.25, l2 = (1.2-1)^2 = 0.04          -> 0.25 (not counted)
    #  d: padding (V=50) ignored
    # loss = 0.5 * (1.0 + 0.64 + 0.25) / 3 = 0.5 * 1.89 / 3 = 0.315 ; clipfrac = 1/3
    values = t([[1.0, 1.5], [1.5, 50.0]])
    old = t([[0.9, 1.0], [1.0, 0.0]])
    returns = t([[2.0, 2.0], [1.0, 0.0]])
    mask = t([[1, 1], [1, 0]])
    loss, clipfrac = value_loss(values, old, returns, mask, cliprange_value=0.2)
    close(loss, 0.315, atol=1e-6)
    close(clipfrac, 1 / 3)


def test_value_loss_hand_no_clipping():
    # all |V - V_old| <= 0.2 -> plain 0.5 * mean((V - R)^2)
    # (1.0-2.0)^2 = 1, (0.5-0.0)^2 = 0.25, (2.1-1.1)^2 = 1 -> 0.5 * 2.25 / 3 = 0.375 ; clipfrac 0
    values = t([[1.0, 0.5, 2.1]])
    old = t([[0.9, 0.4, 2.0]])
    returns = t([[2.0, 0.0, 1.1]])
    loss, clipfrac = value_loss(values, old, returns, t([[1, 1, 1]]), cliprange_value=0.2)
    close(loss, 0.375, atol=1e-6)
    close(clipfrac, 0.0, atol=0)


# ----------------------------------------------------------------------------------- token rewards


def test_token_rewards_hand():
    # kl_coef = 0.5 ; non-score = -0.5 * kl on real tokens, 0 on padding
    # row 0 (EOS at t=1): [-0.05, -0.10, 0, 0]            ; score 1.0 on t=1 -> [-0.05, 0.90, 0, 0]
    # row 1 (no EOS):     [-0.25, -0.25, -0.25, -0.25]    ; score -2 on t=3  -> [-0.25, -0.25, -0.25, -2.25]
    scores = t([1.0, -2.0])
    kl = t([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    mask = t([[1, 1, 0, 0], [1, 1, 1, 1]], torch.long)
    rewards, non_score = token_rewards(scores, kl, 0.5, mask)
    close(non_score, [[-0.05, -0.10, 0.0, 0.0], [-0.25, -0.25, -0.25, -0.25]])
    close(rewards, [[-0.05, 0.90, 0.0, 0.0], [-0.25, -0.25, -0.25, -2.25]])
    close(kl, [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])  # inputs untouched


# ------------------------------------------------------------------------------ state/action alignment


def test_truncate_after_eos_and_first_true_indices():
    responses = t([[5, EOS, 7, 7], [5, 6, 7, 8]], torch.long)
    truncated, mask = truncate_after_eos(responses, EOS, PAD)
    assert truncated.tolist() == [[5, 2, 0, 0], [5, 6, 7, 8]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    first = first_true_indices(responses == EOS)
    assert first.tolist() == [1, 4]  # 4 == T: no EOS in row 1
    assert (first == responses.shape[1]).tolist() == [False, True]  # the missing-EOS row is the second one
    assert responses.tolist() == [[5, 2, 7, 7], [5, 6, 7, 8]]  # input untouched


def test_truncate_after_eos_edge_cases():
    # EOS first, and repeated EOS: only the first one counts, everything after becomes pad (a second EOS too)
    responses = t([[EOS, 4, 4], [3, EOS, EOS], [EOS, EOS, EOS]], torch.long)
    truncated, mask = truncate_after_eos(responses, EOS, pad_token_id=9)
    assert truncated.tolist() == [[2, 9, 9], [3, 2, 9], [2, 9, 9]]
    assert mask.tolist() == [[1, 0, 0], [1, 1, 0], [1, 0, 0]]
    assert first_true_indices(t([[False, False, True], [False, False, False], [True, True, False]], torch.bool)).tolist() == [2, 3, 0]


def test_score_lands_on_eos_position_end_to_end():
    # truncate -> mask -> rewards: the score goes to the EOS index (row 0: t=1) or the last token if no EOS (row 1: t=3)
    responses = t([[5, EOS, 7, 7], [5, 6, 7, 8]], torch.long)
    _, mask = truncate_after_eos(responses, EOS, PAD)
    rewards, _ = token_rewards(t([3.0, 4.0]), torch.zeros(2, 4), 0.1, mask)
    close(rewards, [[0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 4.0]], atol=0)
    eos_pos = first_true_indices(responses == EOS).clamp(max=responses.shape[1] - 1)
    assert rewards.abs().argmax(1).tolist() == eos_pos.tolist() == [1, 3]


# ------------------------------------------------------------------------------ logprobs / entropy


def _naive_logprobs(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.log_softmax(logits / temperature, -1).gather(-1, labels[..., None])[..., 0]


def test_logprobs_from_logits_hand():
    # logits [0, ln 3]: T=1 -> p = [1/4, 3/4] -> logp(1) = ln 0.75, logp(0) = ln 0.25
    # T=0.5 -> logits/T = [0, 2 ln 3] -> p = [1, 9]/10 -> logp(1) = ln 0.9, logp(0) = ln 0.1
    logits = t([[[0.0, math.log(3)], [0.0, math.log(3)]]])
    labels = t([[1, 0]], torch.long)
    close(logprobs_from_logits(logits, labels), [[math.log(0.75), math.log(0.25)]])
    close(logprobs_from_logits(logits, labels, temperature=0.5), [[math.log(0.9), math.log(0.1)]])


@pytest.mark.parametrize("dtype,atol_naive_same_dtype", [(torch.float32, 1e-5), (torch.bfloat16, 0.1)])
def test_logprobs_from_logits_matches_naive(dtype, atol_naive_same_dtype):
    g = torch.Generator().manual_seed(5)
    B, T, V, temp = 3, 5, 50, 0.7
    logits = (torch.randn(B, T, V, generator=g) * 3).to(dtype)
    labels = torch.randint(0, V, (B, T), generator=g)
    out = logprobs_from_logits(logits, labels, temperature=temp)
    assert out.dtype == torch.float32  # computed in fp32 whatever the input
    # exact-ish against the naive formula on the same values upcast to fp32
    close(out, _naive_logprobs(logits.float(), labels, temp), atol=1e-5)
    # and against the naive formula run in the input dtype (bf16 rounds: loose tolerance)
    close(out, _naive_logprobs(logits, labels, temp).float(), atol=atol_naive_same_dtype)
    # the temperature matters: T=1 gives different numbers
    assert (out - logprobs_from_logits(logits, labels)).abs().max() > 0.1
    # full distribution sums to one
    all_labels = torch.arange(V).expand(B * T, V).reshape(B, T, V)
    full = torch.stack([logprobs_from_logits(logits, all_labels[..., v], temp) for v in range(V)], -1)
    close(full.exp().sum(-1), torch.ones(B, T), atol=1e-5)


def test_entropy_from_logits():
    V = 7
    # uniform logits (any constant, any temperature) -> H = log V = log 7 = 1.945910
    for const, temp in ((0.0, 1.0), (3.7, 0.7), (-2.0, 2.0)):
        close(entropy_from_logits(torch.full((2, 3, V), const), temperature=temp), torch.full((2, 3), math.log(V)))
    close(entropy_from_logits(torch.zeros(1, 1, V, dtype=torch.bfloat16)), [[1.945910]], atol=1e-5)
    # p = [1/4, 3/4]: H = -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.346574 + 0.215762 = 0.562335
    close(entropy_from_logits(t([[[0.0, math.log(3)]]])), [[0.562335]], atol=1e-6)
    # T=0.5: p = [0.1, 0.9]: H = -(0.1 ln 0.1 + 0.9 ln 0.9) = 0.230259 + 0.094824 = 0.325083
    close(entropy_from_logits(t([[[0.0, math.log(3)]]]), temperature=0.5), [[0.325083]], atol=1e-6)

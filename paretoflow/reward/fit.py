"""Array-level fitting for the reward model: ridge heads, Bradley-Terry heads, gating.

Pure functions of feature matrices, so they are tested on synthetic features without
any backbone. `paretoflow.reward.train` feeds them real features.

- `standardizer`, `fit_ridge_path`, `select_ridge_alpha`: ArmoRM stage 1 regression of
  absolute ratings. Ridge has a closed form through one SVD for every alpha; the alpha
  with the lowest validation MSE wins (ties → the larger alpha, the simpler model).
  Without validation rows the exact leave-one-out MSE of ridge is used instead
  (residual_i / (1 − h_ii), Hastie et al., ESL eq. 7.52 for linear smoothers).
- `fit_bradley_terry_head`: a linear head for objectives that only have pairs,
  −log σ(w·(x_c − x_r)) with full-batch Adam and early stopping on validation loss.
- `fit_gating`: ArmoRM stage 2, an MLP on prompt features → softmax over objectives;
  the overall reward β·g(x_p)·z is trained with the Bradley-Terry loss, heads frozen.
- `fit_temperature`: one scalar τ so σ(τ·Δ) is a calibrated pairwise probability.
- `length_coefficients`: ArmoRM-style verbosity debiasing strengths.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from paretoflow.reward.losses import bradley_terry_loss


def standardizer(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and scale; constant columns get scale 1 so they map to 0, not NaN."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"need a non-empty 2-D feature matrix, got shape {features.shape}")
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-8] = 1.0
    return mean, scale


# ------------------------------------------------------------------------------ ridge


@dataclass
class RidgeFit:
    alpha: float
    weight: np.ndarray  # [d]
    bias: float
    selection_mse: dict[float, float]  # alpha -> validation (or leave-one-out) MSE
    selection: str  # "validation" or "leave_one_out"


def fit_ridge_path(features: np.ndarray, targets: np.ndarray, alphas) -> tuple[dict[float, np.ndarray], float, tuple]:
    """Ridge weights for every alpha from one SVD; the intercept is left unpenalised."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"features {x.shape} and targets {y.shape} must be non-empty and match")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("ridge inputs contain NaN or inf")
    x_mean, y_mean = x.mean(axis=0), y.mean()
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    uty = u.T @ (y - y_mean)
    weights = {float(a): vt.T @ (s / (s * s + a) * uty) for a in alphas}
    return weights, float(y_mean), (x_mean, u, s)


def select_ridge_alpha(
    train_features: np.ndarray,
    train_targets: np.ndarray,
    alphas,
    val_features: np.ndarray | None = None,
    val_targets: np.ndarray | None = None,
) -> RidgeFit:
    """Fit ridge for each alpha; keep the one with the lowest validation MSE."""
    alphas = sorted(float(a) for a in alphas)
    if not alphas:
        raise ValueError("need at least one ridge alpha")
    with single_thread():
        weights, y_mean, (x_mean, u, s) = fit_ridge_path(train_features, train_targets, alphas)
    x = np.asarray(train_features, dtype=np.float64)
    y = np.asarray(train_targets, dtype=np.float64)
    mse: dict[float, float] = {}
    use_validation = val_features is not None and val_targets is not None and len(val_targets) > 0
    for a in alphas:
        bias = y_mean - x_mean @ weights[a]
        if use_validation:
            prediction = np.asarray(val_features, dtype=np.float64) @ weights[a] + bias
            mse[a] = float(np.mean((prediction - np.asarray(val_targets, dtype=np.float64)) ** 2))
        else:
            residual = y - (x @ weights[a] + bias)
            # Hat-matrix diagonal of centred ridge plus the intercept's 1/n.
            leverage = (u * u) @ (s * s / (s * s + a)) + 1.0 / len(y)
            mse[a] = float(np.mean((residual / np.maximum(1.0 - leverage, 1e-12)) ** 2))
    # Lowest MSE; on (near-)ties prefer the larger alpha (scan from the top).
    best = min(reversed(alphas), key=lambda a: round(mse[a], 12))
    return RidgeFit(
        alpha=best,
        weight=weights[best],
        bias=float(y_mean - x_mean @ weights[best]),
        selection_mse=mse,
        selection="validation" if use_validation else "leave_one_out",
    )


@contextlib.contextmanager
def single_thread():
    """Run torch and BLAS on one thread, then restore.

    The heads and the gate are a few hundred rows by a few hundred features. On the shared
    2-core machines (load ~12) multi-threaded BLAS/torch spent its time waiting: an SVD of
    255x1152 took 16 s with default threads and 0.14 s on one; a gating epoch 55 ms vs
    7 ms. threadpoolctl ships with scikit-learn; without it only torch is limited.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn (a dependency) brings it
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------- Bradley-Terry head


@dataclass
class BradleyTerryFit:
    weight: np.ndarray  # [d]
    best_epoch: int
    train_loss: float
    val_loss: float | None


def _val_loss(loss_of) -> float:
    with torch.no_grad():
        return float(loss_of().item())


def fit_bradley_terry_head(
    chosen_features: np.ndarray,
    rejected_features: np.ndarray,
    val_chosen_features: np.ndarray | None = None,
    val_rejected_features: np.ndarray | None = None,
    epochs: int = 300,
    lr: float = 0.01,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> BradleyTerryFit:
    """Linear reward r(x) = w·x trained on −log σ(r(x_c) − r(x_r)); early stop on val loss.

    A bias cancels in r_c − r_r, so the head has none.
    """
    diff = torch.as_tensor(np.asarray(chosen_features) - np.asarray(rejected_features), dtype=torch.float64)
    if diff.ndim != 2 or diff.shape[0] == 0:
        raise ValueError(f"need at least one pair of 2-D features, got shape {tuple(diff.shape)}")
    if not torch.isfinite(diff).all():
        raise ValueError("Bradley-Terry features contain NaN or inf")
    has_val = val_chosen_features is not None and val_rejected_features is not None and len(val_chosen_features) > 0
    val_diff = (
        torch.as_tensor(np.asarray(val_chosen_features) - np.asarray(val_rejected_features), dtype=torch.float64)
        if has_val
        else None
    )
    generator = torch.Generator().manual_seed(seed)
    weight = (0.01 * torch.randn(diff.shape[1], generator=generator, dtype=torch.float64)).requires_grad_()
    optimizer = torch.optim.Adam([weight], lr=lr, weight_decay=weight_decay)
    zeros = torch.zeros(diff.shape[0], dtype=torch.float64)

    def train_loss():
        return bradley_terry_loss(diff @ weight, zeros)[0].mean()

    def validation_loss():
        return bradley_terry_loss(val_diff @ weight, torch.zeros(val_diff.shape[0], dtype=torch.float64))[0].mean()

    best = (float("inf"), 0, weight.detach().clone())
    with single_thread():
        for epoch in range(1, epochs + 1):
            optimizer.zero_grad()
            loss = train_loss()
            loss.backward()
            optimizer.step()
            monitored = _val_loss(validation_loss) if has_val else _val_loss(train_loss)
            if monitored < best[0] - 1e-9:
                best = (monitored, epoch, weight.detach().clone())
    weight.data.copy_(best[2])
    return BradleyTerryFit(
        weight=best[2].numpy(),
        best_epoch=best[1],
        train_loss=_val_loss(train_loss),
        val_loss=_val_loss(validation_loss) if has_val else None,
    )


# ---------------------------------------------------------------------------- gating


class GatingNetwork(torch.nn.Module):
    """prompt features → ReLU MLP → softmax weights over K objectives, times β = exp(log β)."""

    def __init__(self, input_dim: int, hidden_size: int, num_objectives: int):
        super().__init__()
        self.hidden = torch.nn.Linear(input_dim, hidden_size)
        self.out = torch.nn.Linear(hidden_size, num_objectives)
        self.log_beta = torch.nn.Parameter(torch.zeros(1))

    def weights(self, prompt_features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.out(torch.relu(self.hidden(prompt_features))), dim=-1)

    def forward(self, prompt_features: torch.Tensor, objective_scores: torch.Tensor) -> torch.Tensor:
        return self.log_beta.exp() * (self.weights(prompt_features) * objective_scores).sum(dim=-1)


@dataclass
class GatingFit:
    tensors: dict[str, np.ndarray]  # gate_w1, gate_b1, gate_w2, gate_b2, log_beta
    best_epoch: int
    train_loss: float
    val_loss: float | None


def fit_gating(
    prompt_features: np.ndarray,
    chosen_scores: np.ndarray,
    rejected_scores: np.ndarray,
    val_prompt_features: np.ndarray | None = None,
    val_chosen_scores: np.ndarray | None = None,
    val_rejected_scores: np.ndarray | None = None,
    hidden_size: int = 64,
    epochs: int = 300,
    lr: float = 0.005,
    seed: int = 0,
) -> GatingFit:
    """Train the gate on pairs: −log σ(β g(x_p)·(z_c − z_r)); heads (z) stay frozen.

    Prompt features must already be standardised; scores are [n_pairs, K].
    """
    p = torch.as_tensor(np.asarray(prompt_features), dtype=torch.float32)
    zc = torch.as_tensor(np.asarray(chosen_scores), dtype=torch.float32)
    zr = torch.as_tensor(np.asarray(rejected_scores), dtype=torch.float32)
    if p.shape[0] == 0 or zc.shape != zr.shape or zc.shape[0] != p.shape[0]:
        raise ValueError(
            f"gating needs matching non-empty inputs; got prompts {tuple(p.shape)}, "
            f"chosen {tuple(zc.shape)}, rejected {tuple(zr.shape)}"
        )
    if not (torch.isfinite(p).all() and torch.isfinite(zc).all() and torch.isfinite(zr).all()):
        raise ValueError("gating inputs contain NaN or inf")
    has_val = val_prompt_features is not None and len(val_prompt_features) > 0
    if has_val:
        vp = torch.as_tensor(np.asarray(val_prompt_features), dtype=torch.float32)
        vzc = torch.as_tensor(np.asarray(val_chosen_scores), dtype=torch.float32)
        vzr = torch.as_tensor(np.asarray(val_rejected_scores), dtype=torch.float32)
    torch.manual_seed(seed)
    gate = GatingNetwork(p.shape[1], hidden_size, zc.shape[1])
    optimizer = torch.optim.Adam(gate.parameters(), lr=lr)

    def loss_on(prompts, chosen, rejected):
        # Same prompt for both responses, so the gate weights are shared within a pair.
        return bradley_terry_loss(gate(prompts, chosen), gate(prompts, rejected))[0].mean()

    def snapshot():
        return {k: v.detach().clone() for k, v in gate.state_dict().items()}

    best = (float("inf"), 0, snapshot())
    with single_thread():
        for epoch in range(1, epochs + 1):
            gate.train()
            optimizer.zero_grad()
            loss = loss_on(p, zc, zr)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                monitored = float((loss_on(vp, vzc, vzr) if has_val else loss_on(p, zc, zr)).item())
            if monitored < best[0] - 1e-9:
                best = (monitored, epoch, snapshot())
    gate.load_state_dict(best[2])
    with torch.no_grad():
        train_loss = float(loss_on(p, zc, zr).item())
        val_loss = float(loss_on(vp, vzc, vzr).item()) if has_val else None
    state = gate.state_dict()
    tensors = {
        "gate_w1": state["hidden.weight"].double().numpy(),
        "gate_b1": state["hidden.bias"].double().numpy(),
        "gate_w2": state["out.weight"].double().numpy(),
        "gate_b2": state["out.bias"].double().numpy(),
        "log_beta": state["log_beta"].double().numpy(),
    }
    return GatingFit(tensors=tensors, best_epoch=best[1], train_loss=train_loss, val_loss=val_loss)


def uniform_gating(input_dim: int, num_objectives: int, hidden_size: int) -> dict[str, np.ndarray]:
    """Zero weights: softmax gives 1/K to every objective (used when no pair can train a gate)."""
    return {
        "gate_w1": np.zeros((hidden_size, input_dim)),
        "gate_b1": np.zeros(hidden_size),
        "gate_w2": np.zeros((num_objectives, hidden_size)),
        "gate_b2": np.zeros(num_objectives),
        "log_beta": np.zeros(1),
    }


# ------------------------------------------------------------------ calibration, length


TEMPERATURE_GRID = np.logspace(-3, 4, 281)  # τ from 1e-3 to 1e4: covers logits and [0,1] ratings


def fit_temperature(differences: np.ndarray, grid: np.ndarray = TEMPERATURE_GRID) -> float:
    """τ minimising the mean −log σ(τ·(r_c − r_r)) over pairs (grid search, log-spaced).

    Perfectly separated pairs push τ to the top of the grid, which is the honest answer.
    """
    d = np.asarray(differences, dtype=np.float64).reshape(-1)
    if d.size == 0:
        return 1.0
    losses = [np.mean(np.logaddexp(0.0, -t * d)) for t in grid]
    return float(grid[int(np.argmin(losses))])


def length_coefficients(z_scores: np.ndarray, standardized_lengths: np.ndarray, penalty: float) -> np.ndarray:
    """λ_k = penalty · cov(z_k, ℓ) / var(ℓ): penalty 1 removes each head's linear length part."""
    if not 0.0 <= penalty <= 1.0:
        raise ValueError(f"verbosity penalty must be in [0, 1], got {penalty}")
    z = np.asarray(z_scores, dtype=np.float64)
    ell = np.asarray(standardized_lengths, dtype=np.float64)
    variance = ell.var()
    if penalty == 0.0 or variance < 1e-12:
        return np.zeros(z.shape[1])
    covariance = ((z - z.mean(axis=0)) * (ell - ell.mean())[:, None]).mean(axis=0)
    return penalty * covariance / variance

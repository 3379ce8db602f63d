"""Array-level fitting for the reward model: preference heads, gating, calibration.

Pure functions of feature matrices, so they are tested on synthetic features without
any backbone. `paretoflow.reward.train` feeds them real features.

- `standardizer`: column mean/scale on the training responses.
- `fit_preference_head`: ArmoRM stage 1, departing from the paper's rating regression:
  one linear head per objective fitted on all of its sources at once, Bradley-Terry on
  pairs plus soft-label logistic regression on ratings, per-source weights, L2 penalty
  picked on validation loss (scipy L-BFGS; convex).
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


# ------------------------------------------------------------ preference head (stage 1)


@dataclass
class PairSource:
    """Preference pairs of one source as feature differences x_c − x_r."""

    name: str
    differences: np.ndarray  # [n, d]
    weight: float = 1.0  # the source's share of the loss (params: reward.sources)
    pair_weights: np.ndarray | None = None  # [n] relative weights inside the source


@dataclass
class RatingSource:
    """Absolute ratings of one source, rescaled to [0, 1], higher = better."""

    name: str
    features: np.ndarray  # [n, d]
    targets: np.ndarray  # [n] in [0, 1]
    weight: float = 1.0


@dataclass
class HeadFit:
    weight: np.ndarray  # [d]
    rating_bias: dict[str, float]  # per rating source: c_s
    alpha: float
    selection: dict[float, float]  # alpha -> validation loss (or training loss without val)
    selected_on: str  # "val" or "train"
    train_loss: float
    iterations: int


def _source_terms(theta, d, pair_sources, rating_sources, with_grad):
    """Σ_s λ_s · (source mean loss) / Σ_s λ_s and its gradient (see `fit_preference_head`)."""
    w = theta[:d]
    total_weight = sum(s.weight for s in pair_sources) + sum(s.weight for s in rating_sources)
    value, grad = 0.0, np.zeros_like(theta)
    for source in pair_sources:
        pi = np.ones(len(source.differences)) if source.pair_weights is None else source.pair_weights
        scale = source.weight / (total_weight * pi.sum())
        z = source.differences @ w
        value += scale * float(pi @ np.logaddexp(0.0, -z))
        if with_grad:
            grad[:d] -= scale * (source.differences.T @ (pi * _sigmoid(-z)))
    for k, source in enumerate(rating_sources):
        scale = source.weight / (total_weight * len(source.targets))
        z = source.features @ w + theta[d + k]
        # Soft-label cross-entropy −y log σ(z) − (1 − y) log(1 − σ(z)) = softplus(z) − y z.
        value += scale * float(np.sum(np.logaddexp(0.0, z) - source.targets * z))
        if with_grad:
            residual = _sigmoid(z) - source.targets
            grad[:d] += scale * (source.features.T @ residual)
            grad[d + k] += scale * residual.sum()
    return value, grad


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def preference_loss(weight, rating_bias, pair_sources, rating_sources) -> float:
    """The data part of the head objective (no penalty): the validation criterion."""
    theta = np.concatenate([weight, [rating_bias.get(s.name, 0.0) for s in rating_sources]])
    if not pair_sources and not rating_sources:
        return float("nan")
    return _source_terms(theta, len(weight), pair_sources, rating_sources, with_grad=False)[0]


def fit_preference_head(
    pair_sources: list[PairSource],
    rating_sources: list[RatingSource],
    alphas,
    val_pair_sources: list[PairSource] | None = None,
    val_rating_sources: list[RatingSource] | None = None,
    max_iterations: int = 500,
) -> HeadFit:
    """One linear head r(x) = w·x fitted on every source of an objective at once.

        L(w, c) = Σ_s λ_s ℓ_s / Σ_s λ_s + α/2 ‖w‖²
        pairs:   ℓ_s = Σ_i π_i softplus(−w·(x_c,i − x_r,i)) / Σ_i π_i    (Bradley-Terry)
        ratings: ℓ_s = mean_i [softplus(w·x_i + c_s) − y_i (w·x_i + c_s)]  (soft-label
                 logistic regression: σ(r + c_s) predicts the rating y ∈ [0, 1])

    Both terms put r on one logit scale, so a source of ratings and a source of pairs
    train the same w (the issue-9 fix: one source never replaces another); c_s absorbs
    each rating source's offset. The objective is convex; L-BFGS (scipy) solves it for
    every α from the largest down (warm starts), and the α with the lowest validation
    loss (the same data term on the val sources; ties → the larger α) is kept.
    """
    from scipy.optimize import minimize

    sources = [*pair_sources, *rating_sources]
    if not sources or all(s.weight <= 0 for s in sources):
        raise ValueError("a preference head needs at least one source with a positive weight")
    d = (pair_sources[0].differences if pair_sources else rating_sources[0].features).shape[1]
    for source in sources:
        matrix = source.differences if isinstance(source, PairSource) else source.features
        if matrix.ndim != 2 or matrix.shape[1] != d or matrix.shape[0] == 0:
            raise ValueError(f"source {source.name!r}: need a non-empty [n, {d}] matrix, got {matrix.shape}")
        if not np.all(np.isfinite(matrix)):
            raise ValueError(f"source {source.name!r}: features contain NaN or inf")
    for source in rating_sources:
        if np.any((source.targets < 0) | (source.targets > 1)) or not np.all(np.isfinite(source.targets)):
            raise ValueError(f"source {source.name!r}: ratings must be finite and in [0, 1]")
    val_pairs, val_ratings = list(val_pair_sources or []), list(val_rating_sources or [])
    has_val = any(len(s.differences) for s in val_pairs) or any(len(s.targets) for s in val_ratings)
    theta = np.zeros(d + len(rating_sources))
    fits: dict[float, tuple[np.ndarray, float, int]] = {}
    selection: dict[float, float] = {}
    with single_thread():
        for alpha in sorted((float(a) for a in alphas), reverse=True):

            def objective(t, alpha=alpha):
                value, grad = _source_terms(t, d, pair_sources, rating_sources, with_grad=True)
                grad[:d] += alpha * t[:d]
                return value + 0.5 * alpha * float(t[:d] @ t[:d]), grad

            result = minimize(objective, theta, jac=True, method="L-BFGS-B", options={"maxiter": max_iterations})
            theta = result.x
            train = _source_terms(theta, d, pair_sources, rating_sources, with_grad=False)[0]
            fits[alpha] = (theta.copy(), train, int(result.nit))
            biases = {s.name: float(theta[d + k]) for k, s in enumerate(rating_sources)}
            selection[alpha] = preference_loss(theta[:d], biases, val_pairs, val_ratings) if has_val else train
    if not fits:
        raise ValueError("need at least one alpha")
    # Lowest loss; on (near-)ties the larger alpha (the simpler model): scan from the top.
    best = min(sorted(fits, reverse=True), key=lambda a: round(selection[a], 9))
    theta, train, iterations = fits[best]
    return HeadFit(
        weight=theta[:d], rating_bias={s.name: float(theta[d + k]) for k, s in enumerate(rating_sources)},
        alpha=best, selection=selection, selected_on="val" if has_val else "train",
        train_loss=train, iterations=iterations,
    )  # fmt: skip


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

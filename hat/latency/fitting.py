"""How predictors are fitted: weighted ridge regression with its alpha cross-validated, and HAT's MLP."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hat.latency.features import HAT_FEATURE_SCALE

RIDGE_ALPHAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass(frozen=True)
class MlpRecipe:
    """How the MLP on HAT's ten features is trained (features / HAT's scales, target / its mean, MSE, Adam).

    The default is small and fast: on HAT's Titan Xp CSV (1,600 training rows) it trains in about
    1 s on one thread, and is as accurate as HAT's own recipe, :data:`HAT_MLP`, which takes about
    a minute (BENCHMARKS.md).
    """

    hidden: tuple[int, ...] = (64, 64)
    lr: float = 5e-3
    steps: int = 500
    batch: int = 512


HAT_MLP = MlpRecipe(hidden=(400, 400, 400), lr=1e-5, steps=5000, batch=128)


# ---- ridge regression (weighted for relative error) -----------------------------------------------
def _ridge_solve(x: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    xw = np.concatenate([x, np.ones((len(x), 1))], axis=1) * np.sqrt(w)[:, None]
    reg = alpha * np.eye(xw.shape[1])
    reg[-1, -1] = 0.0  # no penalty on the intercept
    beta = np.linalg.solve(xw.T @ xw + reg * len(x), xw.T @ (y * np.sqrt(w)))
    return beta[:-1], float(beta[-1])


def fit_ridge(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    """Ridge on standardised features; alpha by 5-fold CV.

    Residuals are weighted by 1/latency: between absolute error (which lets slow models dominate)
    and relative error (which ignores them), and on held-out data better than either on RMSE and
    MAPE together (see BENCHMARKS.md).
    """
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    xs, w = (x - mean) / scale, 1.0 / y
    folds = np.random.default_rng(seed).permutation(len(y)) % 5
    best_alpha, best_err = RIDGE_ALPHAS[0], math.inf
    if len(y) >= 10:
        for alpha in RIDGE_ALPHAS:
            err = 0.0
            for k in range(5):
                train, test = folds != k, folds == k
                coef, icpt = _ridge_solve(xs[train], y[train], w[train], alpha)
                err += float(np.sum(w[test] * (xs[test] @ coef + icpt - y[test]) ** 2))
            if err < best_err:
                best_alpha, best_err = alpha, err
    coef, intercept = _ridge_solve(xs, y, w, best_alpha)
    return {"mean": mean, "scale": scale, "coef": coef, "intercept": intercept, "alpha": best_alpha}


# ---- HAT's MLP ---------------------------------------------------------------------------------
def fit_mlp(hat10: np.ndarray, y: np.ndarray, recipe: MlpRecipe, seed: int) -> dict[str, Any]:
    """An MLP trained by ``recipe`` on one thread (fast for these small nets, and the same result
    however busy the machine is)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_mlp(torch, hat10, y, recipe, seed)
    finally:
        torch.set_num_threads(threads)


def _train_mlp(torch: Any, hat10: np.ndarray, y: np.ndarray, recipe: MlpRecipe, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    sizes = [10, *recipe.hidden, 1]
    layers: list[torch.nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    target_scale = float(np.mean(y))
    x = torch.tensor(hat10 / HAT_FEATURE_SCALE, dtype=torch.float32)
    t = torch.tensor(y / target_scale, dtype=torch.float32).unsqueeze(1)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(recipe.steps):
        index = torch.randint(0, len(x), (min(recipe.batch, len(x)),), generator=g)
        loss = torch.nn.functional.mse_loss(net(x[index]), t[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    return {
        "target_scale": target_scale,
        "layers": [(m.weight.detach().numpy().astype(float), m.bias.detach().numpy().astype(float)) for m in linears],
    }


def mlp_forward(params: dict[str, Any], hat10: np.ndarray) -> np.ndarray:
    h = hat10 / HAT_FEATURE_SCALE
    layers = params["layers"]
    for i, (weight, bias) in enumerate(layers):
        h = h @ weight.T + bias
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h[:, 0] * params["target_scale"]

"""Consistent batches of mutually distant cliques (CliqueCNN, seed 001 §3.2.3, Eq. 3.1–3.6).

Z ∈ {0,1}^{B×K} assigns K cliques to B batches; S′ ∈ R^{K×K} is the average pairwise sample
similarity between cliques; C ∈ {0,1}^{K×N} the clique assignment. Eq. 3.1, relaxed to
Z ∈ [0,1] with the binarisation term λ₃‖Z − 0.5‖²_F (maximised):

    f(Z) = tr(ZS′Zᵀ) − tr(Z diag(S′) Zᵀ) − λ₁ Σ_b ‖z_b C‖_p^p − λ₂ ‖1ZC‖_p^p − λ₃‖Z − 0.5‖²_F,
    s.t. Z1 = r1,  p = 1/16,

a difference of convex functions u − v with u = tr(ZS′Zᵀ) − λ₁Σ‖z_bC‖_p^p − λ₂‖1ZC‖_p^p (convex:
S′ PSD, and x ↦ −x^p is convex on x ≥ 0 for p < 1) and v = tr(Z diag(S′) Zᵀ) + λ₃‖Z − 0.5‖²
(Eq. 3.3–3.4). CCCP (Eq. 3.5–3.6) linearises v at Z^t and minimises the convex remainder over
the rows' capped simplices {z ∈ [0,1]^K, Σz = r}; we use projected gradient descent with
Armijo backtracking (the thesis uses an interior-point method; any convex solver that honours
the constraint will do). The inner solver starts at Z^t and only accepts decreasing steps, so
every CCCP iterate satisfies f(Z^{t+1}) ≤ f(Z^t).

Choices where the source is silent or inexact (documented, exposed):

- ‖x‖_p^p has an infinite derivative at 0; we use Σ((x + ε)^p − ε^p), ε = 10⁻³ (still concave,
  still 0 at 0), so the gradient exists everywhere.
- The thesis' ∇v (= 2Z ⊙ (1 diag S′) + 2Z − 1) drops λ₃; we use the exact
  ∇v = 2Z ⊙ (1 diag(S′)ᵀ) + 2λ₃(Z − 0.5).
- S′ is divided by the mean of its diagonal, so λ₂ = 1 weighs "one more covered sample"
  against "one unit of mean clique self-similarity". λ₁ defaults to 1/B: the per-batch term is a
  sum of B coverages against one total, and at λ₁ = 1 it outweighs the total B-fold and pulls
  every batch toward the same largest cliques once K ≫ B·r. Measured on a 10⁴-item Gaussian
  mixture (6,831 cliques, B = 100, r = 20): λ₁ = 1 gives 223 distinct cliques covering 1,274
  items (89 distinct batches); λ₁ = 1/B gives 1,763 cliques covering 5,470 items. On the bundled
  sets (K ≤ B·r) both give the same coverage (mnist5k 2,160 vs 2,149 of 2,500 items).
  λ₃ = 100: with p = 1/16 the coverage terms favour spreading every row thinly over all
  cliques, and λ₃ must outweigh that. Measured (with λ₁ = 1, before the 1/B default) on a
  3,000-item Gaussian mixture (1,880 cliques, B = 100, r = 20): λ₃ = 10 leaves
  the relaxation fractional and rounding yields 2 distinct batches covering 196 items; λ₃ = 100
  gives 99 % binary entries and 100 distinct batches covering 2,564 items. All exposed.
- With dot-product similarity (HOG-LDA, the CNN's embedding) the average pairwise similarity
  between cliques is exactly μ_aᵀμ_b with μ the clique means, so S′ = MMᵀ is PSD by construction
  and never has to be formed: tr(ZS′Zᵀ) = ‖ZM‖²_F, O(B·K + K·d) memory. A dense S′ (any
  similarity) is made PSD by clipping negative eigenvalues (:func:`make_psd`).
- ZC (B×N) is formed in row chunks, so memory stays O(chunk·N + B·K).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def make_psd(s: np.ndarray) -> np.ndarray:
    """Symmetrise ``s`` and clip its negative eigenvalues (projection onto the PSD cone)."""
    s = 0.5 * (s + s.T)
    w, v = np.linalg.eigh(s)
    return (v * np.maximum(w, 0.0)) @ v.T


def clique_means(x: np.ndarray, c: sp.csr_matrix) -> np.ndarray:
    """M (K×d): mean of each clique's rows of ``x``; S′ = MMᵀ for dot-product similarity."""
    sizes = np.asarray(c.sum(axis=1)).ravel()
    return np.asarray(c @ x) / np.maximum(sizes, 1)[:, None]


def project_capped_simplex(y: np.ndarray, r: float, iters: int = 60) -> np.ndarray:
    """Euclidean projection of each row of ``y`` onto {z ∈ [0,1]^K : Σ z = r}.

    z = clip(y − τ, 0, 1) with the row's shift τ, the root of the decreasing, piecewise-linear
    s(τ) = Σ clip(y − τ, 0, 1) − r. Safeguarded Newton: the step τ + s(τ)/#{0 < y − τ < 1} is
    exact once the active set is right and is taken when it stays inside the bracket kept on τ,
    bisection otherwise; a row stops when |s(τ)| ≤ 10⁻¹⁰·max(1, r). Typically ~6 passes over the
    B×K matrix where plain bisection to machine precision needs 40.
    """
    y = np.asarray(y, dtype=np.float64)
    lo = y.min(axis=1) - 1.0  # s(lo) ≥ K − r ≥ 0
    hi = y.max(axis=1)  # s(hi) = −r ≤ 0
    tau = np.empty(len(y))
    todo = np.arange(len(y))
    t = (y.sum(axis=1) - r) / y.shape[1]  # exact if no entry were clipped
    tol = 1e-10 * max(1.0, float(r))
    for _ in range(iters):
        z = (y if len(todo) == len(y) else y[todo]) - t[:, None]
        np.clip(z, 0.0, 1.0, out=z)
        s = z.sum(axis=1) - r
        ok = np.abs(s) <= tol
        tau[todo[ok]] = t[ok]
        keep = ~ok
        if not keep.any():
            todo = todo[:0]
            break
        big = s > 0  # τ too small
        lo[todo] = np.where(big, t, lo[todo])
        hi[todo] = np.where(big, hi[todo], t)
        inner = (z > 0.0).sum(axis=1) - (z >= 1.0).sum(axis=1)
        newton = t + s / np.maximum(inner, 1)
        l_, h_ = lo[todo], hi[todo]
        inside = (inner > 0) & (newton > l_) & (newton < h_)
        t = np.where(inside, newton, 0.5 * (l_ + h_))
        todo, t = todo[keep], t[keep]
    if len(todo):  # not reached within ``iters`` passes (never seen): the bracket's middle
        tau[todo] = t
    return np.minimum(np.maximum(y - tau[:, None], 0.0), 1.0)


@dataclass
class BatchProblem:
    """The relaxed Eq. 3.1 for given cliques. Give ``means`` (S′ = MMᵀ) or a dense ``s``."""

    c: sp.csr_matrix
    n_batches: int
    r: int
    means: np.ndarray | None = None
    s: np.ndarray | None = None
    lambda1: float | None = None
    lambda2: float = 1.0
    lambda3: float = 100.0
    similarity_term: bool = True
    p: float = 1.0 / 16
    eps: float = 1e-3
    chunk: int = 64

    def __post_init__(self) -> None:
        if (self.means is None) == (self.s is None):
            raise ValueError("give exactly one of means (S' = M M^T) or a dense s")
        k = self.c.shape[0]
        if self.lambda1 is None:
            self.lambda1 = 1.0 / self.n_batches
        if not 0 < self.r <= k:
            raise ValueError(f"r = {self.r} cliques per batch, but there are {k} cliques")
        self.c = sp.csr_matrix(self.c, dtype=np.float64)
        self.ct = self.c.T.tocsr()
        if self.means is not None:
            m = np.asarray(self.means, dtype=np.float64)
            diag = (m * m).sum(axis=1)
            scale = max(float(diag.mean()), 1e-12)
            self.means = m / np.sqrt(scale)
            self.diag = diag / scale
        else:
            s = make_psd(np.asarray(self.s, dtype=np.float64))
            scale = max(float(np.diag(s).mean()), 1e-12)
            self.s = s / scale
            self.diag = np.diag(self.s).copy()

    # ---- pieces ----------------------------------------------------------------------------
    def _quad(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """tr(ZS′Zᵀ) and its gradient 2ZS′."""
        if self.means is not None:
            zm = z @ self.means
            return float((zm * zm).sum()), 2.0 * (zm @ self.means.T)
        zs = z @ self.s
        return float((zs * z).sum()), 2.0 * zs

    def _pnorm(self, v: np.ndarray) -> tuple[float, np.ndarray]:
        """Σ((v + ε)^p − ε^p) and its derivative (smoothed ‖v‖_p^p for v ≥ 0)."""
        ve = np.maximum(v, 0.0) + self.eps
        d = np.power(ve, self.p - 1.0)  # one power for both: (v + ε)^p = (v + ε)^(p−1)·(v + ε)
        val = float((d * ve).sum() - ve.size * self.eps**self.p)
        return val, self.p * d

    def _coverage(self, z: np.ndarray) -> tuple[float, np.ndarray, float, np.ndarray]:
        """Σ_b ‖z_bC‖_p^p, ‖1ZC‖_p^p and their gradients, ZC formed in row chunks."""
        per_val, per_grad = 0.0, np.empty_like(z)
        total = np.zeros(self.c.shape[1])
        for s0 in range(0, len(z), self.chunk):
            zc = np.asarray(self.ct @ z[s0 : s0 + self.chunk].T).T  # (chunk, N)
            val, g = self._pnorm(zc)
            per_val += val
            per_grad[s0 : s0 + self.chunk] = np.asarray(self.c @ g.T).T
            total += zc.sum(axis=0)
        tot_val, tg = self._pnorm(total)
        tot_grad = np.broadcast_to(self.c @ tg, z.shape)
        return per_val, per_grad, tot_val, tot_grad

    def u(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """The convex part (Eq. 3.3) and its gradient."""
        val, grad = 0.0, np.zeros_like(z)
        if self.similarity_term:
            val, grad = self._quad(z)
        if self.lambda1 or self.lambda2:
            pv, pg, tv, tg = self._coverage(z)
            val -= self.lambda1 * pv + self.lambda2 * tv
            grad = grad - self.lambda1 * pg - self.lambda2 * tg
        return val, grad

    def v(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """The subtracted convex part (Eq. 3.4) and its gradient."""
        val, grad = 0.0, 2.0 * self.lambda3 * (z - 0.5)
        val = self.lambda3 * float(((z - 0.5) ** 2).sum())
        if self.similarity_term:
            val += float((z * z * self.diag[None, :]).sum())
            grad = grad + 2.0 * z * self.diag[None, :]
        return val, grad

    def objective(self, z: np.ndarray) -> float:
        """The relaxed Eq. 3.1: u(Z) − v(Z)."""
        return self.u(z)[0] - self.v(z)[0]

    # ---- solver ----------------------------------------------------------------------------
    def initial(self, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
        k = self.c.shape[0]
        y = self.r / k + noise * rng.standard_normal((self.n_batches, k))
        return project_capped_simplex(y, self.r)

    def cccp(
        self,
        z0: np.ndarray,
        outer: int = 10,
        inner: int = 10,
        tol: float = 1e-6,
    ) -> tuple[np.ndarray, list[float]]:
        """CCCP (Eq. 3.5–3.6) from the feasible ``z0``; returns Z and f after each iteration."""
        z = project_capped_simplex(np.asarray(z0, dtype=np.float64), self.r)
        history = [self.objective(z)]
        step = 1.0
        for _ in range(outer):
            gv = self.v(z)[1]
            hval, hgrad = self.u(z)
            hval -= float((z * gv).sum())
            hgrad = hgrad - gv
            for _ in range(inner):
                while True:
                    cand = project_capped_simplex(z - step * hgrad, self.r)
                    d = cand - z
                    cval, cgrad = self.u(cand)
                    cval -= float((cand * gv).sum())
                    if cval <= hval + float((hgrad * d).sum()) + (d * d).sum() / (2 * step):
                        break
                    step *= 0.5
                    if step < 1e-12:
                        cand, cval, cgrad = z, hval, hgrad + gv
                        break
                moved = float(np.abs(cand - z).max())
                z, hval, hgrad = cand, cval, cgrad - gv
                step *= 2.0
                if moved < 1e-9:
                    break
            history.append(self.objective(z))
            if abs(history[-2] - history[-1]) <= tol * max(1.0, abs(history[-2])):
                break
        return z, history


def round_batches(z: np.ndarray, r: int) -> np.ndarray:
    """Binary Z: each batch keeps its ``r`` largest entries (the rounding of the relaxation)."""
    top = np.argpartition(-z, r - 1, axis=1)[:, :r]
    out = np.zeros_like(z, dtype=np.int8)
    np.put_along_axis(out, top, 1, axis=1)
    return out


def solve_batches(
    c: sp.csr_matrix,
    n_batches: int,
    r: int,
    rng: np.random.Generator,
    means: np.ndarray | None = None,
    s: np.ndarray | None = None,
    outer: int = 10,
    inner: int = 10,
    **terms: float | bool,
) -> tuple[np.ndarray, list[float]]:
    """Binary Z (B×K) from the relaxed Eq. 3.1 by CCCP + rounding, and the objective trace."""
    prob = BatchProblem(c, n_batches, r, means=means, s=s, **terms)
    z, hist = prob.cccp(prob.initial(rng), outer=outer, inner=inner)
    return round_batches(z, r), hist


def batch_items(z: np.ndarray, members: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The items of each rounded batch of cliques (rows of ``z``, (B, K) 0/1) with their clique
    label within the batch (0..r−1). An item in two cliques of one batch is left out of it (its
    label would be ambiguous), then a clique left with fewer than 2 items; a batch that keeps
    fewer than 2 cliques is dropped."""
    out = []
    for row in z:
        chosen = np.flatnonzero(row)
        if not len(chosen):
            continue
        idx = np.concatenate([members[k] for k in chosen])
        lab = np.concatenate([np.full(len(members[k]), j) for j, k in enumerate(chosen)])
        uniq, counts = np.unique(idx, return_counts=True)
        single = np.isin(idx, uniq[counts == 1])
        idx, lab = idx[single], lab[single]
        keep_lab, lab_counts = np.unique(lab, return_counts=True)
        ok = np.isin(lab, keep_lab[lab_counts >= 2])
        idx, lab = idx[ok], lab[ok]
        if len(np.unique(lab)) >= 2:
            out.append((idx, np.unique(lab, return_inverse=True)[1]))
    return out


def draw_steps(
    pool: list[tuple[np.ndarray, np.ndarray]], steps: int, per: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """An epoch's steps: each a random batch of cliques from ``pool``, of which up to ``per``
    random members of each clique (seed 001 §3.2.4; a batch of cliques can hold more samples
    than fit a step)."""
    out = []
    for b in rng.integers(0, len(pool), size=steps):
        idx, lab = pool[b]
        order = rng.permutation(len(idx))
        idx, lab = idx[order], lab[order]
        # The first ``per`` members of each clique after the shuffle.
        rank = np.zeros(len(lab), dtype=np.int64)
        srt = np.argsort(lab, kind="stable")
        starts = np.searchsorted(lab[srt], lab[srt])
        rank[srt] = np.arange(len(lab)) - starts
        take = rank < per
        out.append((idx[take], lab[take]))
    return out


def clique_purity(
    members: list[np.ndarray], batches: list[tuple[np.ndarray, np.ndarray]], labels: np.ndarray
) -> dict[str, float]:
    """Diagnostics against evaluation labels: the same-label share of within-clique pairs
    (``positive_tp_rate``) and the different-label share of pairs across cliques of a batch
    (``negative_tn_rate``)."""
    same = pairs = 0
    for m in members:
        counts = np.bincount(labels[m])
        same += int((counts * (counts - 1)).sum())
        pairs += len(m) * (len(m) - 1)
    diff = cross = 0
    for idx, lab in batches:
        y = labels[idx]
        other = lab[:, None] != lab[None, :]
        cross += int(other.sum())
        diff += int((other & (y[:, None] != y[None, :])).sum())
    return {"positive_tp_rate": same / max(pairs, 1), "negative_tn_rate": diff / max(cross, 1)}

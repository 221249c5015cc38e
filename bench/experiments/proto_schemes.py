"""Prototype (numpy, slow, float64): force / Z error of interpolation schemes on the FIt-SNE
node lattice (spacing = ints_in_interval / p, defaults) against the exact sum.

box3: FIt-SNE's box-local quadratic Lagrange; lag3/4/5: centred Lagrange; keys4: Keys cubic;
bsp3/bsp4: quadratic/cubic B-spline with the kernel spectrum divided by |B^|^2 (VAR=b: optimal
influence function, VAR=c: kernel from 2x oversampled samples). PAD = margin nodes per side.

    PAD=2 PYTHONPATH=src python bench/experiments/proto_schemes.py box3 lag3 lag4 bsp3 bsp4
"""
import sys, numpy as np, scipy.fft
import turbotsne.gradients.fft as F
from turbotsne.gradients.exact import exact_repulsion

def weights_1d(s, scheme, M):
    """s = position in node units (node j at s=j). Returns (j0, w[n, S])."""
    if scheme == "box3":  # today's: box-local quadratic through the box's own 3 nodes
        b = np.clip(np.floor((s + 0.5) / 3).astype(int), 0, M // 3 - 1)
        j0 = 3 * b
        S = 3
    elif scheme in ("lag3", "bsp3"):
        j0 = np.round(s).astype(int) - 1; S = 3
    elif scheme in ("lag4", "bsp4", "keys4"):
        j0 = np.floor(s).astype(int) - 1; S = 4
    elif scheme in ("lag5",):
        j0 = np.round(s).astype(int) - 2; S = 5
    j0 = np.clip(j0, 0, M - S)
    x = s - j0  # position relative to first stencil node
    w = np.empty((len(s), S))
    for a in range(S):
        if scheme.startswith("lag") or scheme == "box3":
            num = np.ones_like(x)
            for m in range(S):
                if m != a:
                    num *= (x - m) / (a - m)
            w[:, a] = num
        elif scheme.startswith("bsp"):
            t = np.abs(x - a)
            if S == 3:  # quadratic B-spline centred at node
                w[:, a] = np.where(t < 0.5, 0.75 - t * t, np.where(t < 1.5, 0.5 * (1.5 - t) ** 2, 0))
            else:
                w[:, a] = np.where(t < 1, 2 / 3 - t * t + 0.5 * t ** 3, np.where(t < 2, (2 - t) ** 3 / 6, 0))
        elif scheme == "keys4":
            t = np.abs(x - a); A = -0.5
            w[:, a] = np.where(t < 1, (A + 2) * t ** 3 - (A + 3) * t * t + 1,
                               np.where(t < 2, A * t ** 3 - 5 * A * t * t + 8 * A * t - 4 * A, 0))
    return j0, w

def bhat(M2, S):
    k = np.arange(M2)
    om = 2 * np.pi * np.minimum(k, M2 - k) / M2
    if S == 3:
        return np.sinc(om / 2 / np.pi) ** 3
    return np.sinc(om / 2 / np.pi) ** 4

PAD = 2
def fft_rep(Y, dof, scheme, p=3, width=1.0, min_int=50):
    n, d = Y.shape
    lo, hi = Y.min(0), Y.max(0)
    extent = float(np.max(hi - lo))
    nb = F.grid_size(extent, d, p, min_int, width)
    hs = extent / nb / p
    M = nb * p + 2 * PAD
    c = lo + 0.5 * extent
    s = (Y - lo) / hs - 0.5 + PAD
    J, W = zip(*[weights_1d(s[:, k], scheme, M) for k in range(d)])
    S = W[0].shape[1]
    M2 = 2 * M
    grid = np.zeros((d + 1,) + (M2,) * d)
    idx = np.indices((S,) * d).reshape(d, -1).T
    charges = np.concatenate([np.ones((n, 1)), Y - c], 1)
    for t in idx:
        w = np.prod([W[k][:, t[k]] for k in range(d)], 0)
        ii = tuple(J[k] + t[k] for k in range(d))
        for ch in range(d + 1):
            np.add.at(grid[ch], ii, w * charges[:, ch])
    k1d = np.arange(M2); k1d = np.minimum(k1d, M2 - k1d) * hs
    d2 = sum(np.meshgrid(*([k1d ** 2] * d), indexing="ij"))
    q = 1 + d2 / dof
    K1 = q ** -dof; K2 = K1 / q
    K1h = scipy.fft.rfftn(K1).real; K2h = scipy.fft.rfftn(K2).real
    if scheme.startswith("bsp"):
        import os
        var = os.environ.get("VAR", "a")
        if "c" in var:  # K from 2x oversampled samples, low-frequency part
            k2d = np.arange(2 * M2); k2d = np.minimum(k2d, 2 * M2 - k2d) * hs / 2
            d2o = sum(np.meshgrid(*([k2d ** 2] * d), indexing="ij"))
            qo = 1 + d2o / dof
            K1o = scipy.fft.fftn(qo ** -dof).real / 2 ** d; K2o = scipy.fft.fftn(qo ** -(dof + 1)).real / 2 ** d
            sel = np.r_[0:M + 1, 2 * M2 - M + 1:2 * M2]
            sl = np.ix_(*([sel] * d))
            K1h = K1o[sl][..., : M + 1]; K2h = K2o[sl][..., : M + 1]
        b = bhat(M2, S)
        om = 2 * np.pi * np.arange(M2) / M2
        if S == 3:
            sb = (66 + 52 * np.cos(om) + 2 * np.cos(2 * om)) / 120
        else:
            sb = (2416 + 2 * 1191 * np.cos(om) + 2 * 120 * np.cos(2 * om) + 2 * np.cos(3 * om)) / 5040
        B = np.ones_like(K1); SB = np.ones_like(K1)
        for k in range(d):
            sh = [1] * d; sh[k] = M2
            B = B * b.reshape(sh); SB = SB * sb.reshape(sh)
        B = B[..., : M + 1]; SB = SB[..., : M + 1]
        if "b" in var:
            K1h *= B ** 2 / SB ** 2; K2h *= B ** 2 / SB ** 2
        else:
            K1h /= B ** 2; K2h /= B ** 2
    phi = []
    Z = None
    for ch in range(d + 1):
        G = scipy.fft.rfftn(grid[ch])
        if ch == 0:
            Z = scipy.fft.irfftn(G * K1h, grid[ch].shape)
            Z = float((Z * grid[0]).sum()) - n
        phi.append(scipy.fft.irfftn(G * K2h, grid[ch].shape))
    acc = np.zeros((d + 1, n))
    for t in idx:
        w = np.prod([W[k][:, t[k]] for k in range(d)], 0)
        ii = tuple(J[k] + t[k] for k in range(d))
        for ch in range(d + 1):
            acc[ch] += w * phi[ch][ii]
    out = (Y - c) * acc[0][:, None] - acc[1:].T
    return out, Z

def blobs(n, d, spread, std, seed=0, k=10):
    r = np.random.default_rng(seed)
    centers = r.uniform(-spread, spread, (k, d))
    return centers[r.integers(0, k, n)] + r.normal(scale=std, size=(n, d))

if __name__ == "__main__":
    import os; PAD = int(os.environ.get("PAD", 2))
    cases = [("2d ext~200", blobs(3000, 2, 90, 6)), ("2d ext~150", blobs(3000, 2, 65, 5, seed=1)),
             ("2d ext~40", blobs(3000, 2, 15, 3, seed=2)), ("1d ext~200", blobs(3000, 1, 90, 6, seed=3)),
             ("3d ext~20", blobs(3000, 3, 8, 1.5, seed=4))]
    schemes = sys.argv[1:] or ["box3", "lag3", "lag4", "bsp3", "bsp4", "keys4"]
    for name, Y in cases:
        for dof in (1.0, 0.5, 100.0) if "ext~40" in name else (1.0,):
            ex = np.empty_like(Y); Zx = exact_repulsion(Y, dof, ex, np.empty(len(Y)))
            row = []
            for sc in schemes:
                o, Z = fft_rep(Y, dof, sc)
                row.append(f"{sc}: {np.linalg.norm(o/Z-ex/Zx)/np.linalg.norm(ex/Zx):.1e}/{abs(Z-Zx)/Zx:.0e}")
            print(f"{name} dof={dof}:", "  ".join(row), flush=True)

"""Rodas4: a stiffly accurate Rosenbrock method for diffrax, with structured linear algebra.

Why a Rosenbrock method (docs/dfn.md has the measurements): the DFN in double-layer form is a
very stiff ODE (microsecond double-layer modes next to hour-long diffusion). An ESDIRK method with
a chord-Newton iteration (diffrax's Kvaerno5) rejects about half its steps on it because the
Newton iteration does not converge on the stiff, exponential Butler-Volmer modes. A Rosenbrock
method needs no Newton iteration at all: one exact Jacobian and one factorisation per step, then
one linear solve per stage. It is L-stable and stiffly accurate (Rodas4 solves index-1 DAEs),
so the double-layer modes cost nothing, and gradients are the exact derivatives of the
stages: reverse mode by a rule written for them (`_stages`), forward mode by JAX through the
stages with the linear solves differentiated implicitly (`lax.custom_linear_solve`).

Coefficients: Hairer & Wanner, Solving ODEs II (1996), Rodas4 (6 stages, order 4, embedded
order 3), written in the form

    (I / (h gamma) - J) K_i = f(t0 + alpha_i h, y0 + sum_j a_ij K_j) + sum_j c_ij / h K_j
                              + gamma_i h df/dt,
    y1 = y0 + sum_j m_j K_j,   error estimate K_6.

Dense output (for events and saved times) is the method's own continuous extension, built from
the stages (`RodasInterpolation`). A cubic Hermite interpolant through f(y0) and f(y1) is not
usable on a stiff cell: a deviation of y1 from the slow manifold within the tolerance is
amplified by the fast (double-layer) eigenvalues in f(y1). Measured on the DFN at rtol 1e-4: the
solution at the steps was within 0.007 mV of a tight solve, the Hermite interpolant between them
139 mV off. f(y1) is still reused as the next step's f(y0).

The linear solve is pluggable: `DenseSolve` (any model: Jacobian by forward mode, dense LU),
`BandedSolve` for models that declare the sparsity of their right-hand side (the SPM and SPMe:
tridiagonal runs, the temperature's row and column, a rank-one current term), or
`StructuredSolve` for models that describe their `structure` (the DFN): a Jacobian from 11
coloured Jacobian-vector products and 2 vector-Jacobian products, the particle blocks eliminated
node by node (tridiagonal Thomas sweeps), a block-tridiagonal sweep over x for the remaining
electrolyte and potential unknowns (bordered by the temperature) and a rank-one correction for a
current that depends on the state (voltage and power control).
"""

from __future__ import annotations

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

# Rodas4 (Hairer & Wanner 1996), strictly lower triangular A and C stored row-wise
_GAMMA = 0.25
_ALPHA = (0.0, 0.386, 0.21, 0.63, 1.0, 1.0)
_GAMMAS = (0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0)
_A = (
    1.544,
    0.9466785280815826, 0.2557011698983284,
    3.314825187068521, 2.896124015972201, 0.9986419139977817,
    1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895,
)
_A = _A + _A[6:10] + (1.0,)
_C = (
    -5.6688,
    -2.430093356833875, -0.2063599157091915,
    -0.1073529058151375, -9.594562251023355, -20.47028614809616,
    7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160,
    8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136, -6.058818238834054,
)
_M = _A[6:10] + (1.0, 1.0)
# continuous extension (Hairer & Wanner's RODAS code): y(theta) = (1 - theta) y0
# + theta (y1 + (1 - theta) (d1 + theta d2)), d1 and d2 these combinations of the first 5 stages
_D = (
    (10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823, 1.025137723295662),
    (-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386, -6.594389125716872),
)


def _lower(values, s=6):
    out = np.zeros((s, s))
    k = 0
    for i in range(1, s):
        for j in range(i):
            out[i, j] = values[k]
            k += 1
    return out


_A_MAT, _C_MAT = _lower(_A), _lower(_C)
_M_ARR = np.asarray(_M)
_D_ARR = np.asarray([d + (0.0,) for d in _D])  # over all six stages (the last one's weight 0)


# The running totals integrated with the state, q = (charge delivered on discharge [A.h],
# charge taken in on charge [A.h], energy delivered on discharge [W.h], energy taken in on
# charge [W.h]): exact integrals of the solution, not quadratures of sampled outputs.
N_TOTALS = 4


def totals_rate(I, V):
    """d(q)/dt of the running totals (`N_TOTALS`) for current I [A] (positive on discharge) and
    terminal voltage V [V]."""
    dis, chg = jnp.where(I > 0, I, 0.0), jnp.where(I < 0, -I, 0.0)
    return jnp.stack([dis, chg, V * dis, V * chg]) / 3600.0


# The model's right-hand side and terminal voltage as jitted functions of their own. A solve
# and its derivatives call them at many places (the stages, the Jacobian, step ends, events,
# outputs, a held voltage's Newton iteration, and again in each of diffrax's traces of its
# checkpointed loop); JAX traces a jitted function once per model, parameter structure and
# shapes and reuses it, and its derivatives, at every later call. XLA inlines them, so the
# compiled program is the same; only tracing is shorter (benchmarks/README.md).
@eqx.filter_jit
def model_rhs(model, params, t, y, I):
    """`model.rhs(t, y, I, params)`, traced once per model, parameter structure and shapes."""
    return model.rhs(t, y, I, params)


@eqx.filter_jit
def model_voltage(model, params, y, I):
    """`model.voltage(y, I, params)`, traced once per model, parameter structure and shapes."""
    return model.voltage(y, I, params)


class CellField(eqx.Module):
    """The vector field of a cell under a control: d(y, q)/dt = (rhs(t, y, I(t, y)),
    totals_rate(I, V(y, I))), with q the running totals (`N_TOTALS`: charge and energy
    delivered on discharge and taken in on charge). Kept in parts so the solver can build the
    Jacobian as (rhs Jacobian at fixed current) + (rhs current sensitivity) x (current
    gradient); the totals do not feed back into the state, so their rows of the Jacobian are
    all it needs of them."""

    model: eqx.Module
    params: eqx.Module
    current: object  # callable (t, y) -> current [A]
    # False when the current is a function of time only (current and drive-cycle control): the
    # structured solve then skips the current's gradient and its rank-one correction
    state_dependent: bool = eqx.field(static=True, default=True)
    # False when the field does not depend on time (neither the current, as under a drive
    # cycle, nor the model's rhs, `AbstractCellModel.rhs_reads_time`): Rodas4's reverse rule
    # then skips df/dt's second-order product
    time_dependent: bool = eqx.field(static=True, default=True)

    def rhs(self, t, y, I):
        return model_rhs(self.model, self.params, t, y, I)

    def totals(self, t, y, I):
        return totals_rate(I, model_voltage(self.model, self.params, y, I))

    def __call__(self, t, state, args):
        y, _ = state
        I = self.current(t, y)
        return self.rhs(t, y, I), self.totals(t, y, I)


class _LinearSolve(eqx.Module):
    """The linear algebra of a Rosenbrock stage, (I / hg - J) x = b for the state x = (y, q),
    in three parts: `jacobian` (the matrix data and the time derivative df/dt), `factorise`
    (a solve, linear in b) and `matvec` (the product with I / hg - J, cheap to differentiate
    in the data). `factor` puts them together for differentiation by JAX (`matvec` serves only
    this path). Rodas4's own reverse-mode rule (`_stages`) uses `jacobian` and `factorise` and
    takes the matrix's derivative from the field's directional derivatives, so `jacobian` must
    return the exact Jacobian and df/dt of `field(t, state, None)` (`StructuredSolve`: a model
    whose right-hand side does not read t, with the sparsity its `structure` declares), or the
    rule's derivative stops being that of the forward pass."""

    def jacobian(self, field, t, state):
        raise NotImplementedError

    def factorise(self, field, data, hg):
        raise NotImplementedError

    def matvec(self, field, data, hg, x):
        raise NotImplementedError

    def factor(self, field, t, state, hg):
        """(solve, df/dt) for JAX's own derivatives (forward mode, or `Rodas4(reverse_rule=False)`):
        the factorisation is not differentiated, derivatives with respect to the matrix go
        through `lax.custom_linear_solve` (dx = A^-1 (db - dA x)) and `matvec`: cheaper to run
        and to compile than differentiating the DFN's Thomas sweeps (docs/dfn.md)."""
        data, f_t = self.jacobian(field, t, state)
        fixed = self.factorise(field, jax.lax.stop_gradient(data), jax.lax.stop_gradient(hg))
        unravel = ravel_pytree(state)[1]

        def flat(fn):  # on one flat vector: custom_linear_solve's transpose wants b linear as a whole
            return lambda v: ravel_pytree(fn(unravel(v)))[0]

        matvec, solve_flat = flat(lambda x: self.matvec(field, data, hg, x)), flat(fixed)

        def solve(b):
            return unravel(jax.lax.custom_linear_solve(
                matvec, ravel_pytree(b)[0], lambda _, r: solve_flat(r),
                lambda _, r: jax.linear_transpose(solve_flat, r)(r)[0],
            ))

        return solve, f_t


class DenseSolve(_LinearSolve):
    """Solve (I / (h gamma) - J) x = b with J by forward-mode differentiation and a dense LU:
    any model, fine for small systems (the SPM and SPMe use `BandedSolve`)."""

    def jacobian(self, field, t, state):
        flat, unravel = ravel_pytree(state)

        def f_flat(t_, z):
            return ravel_pytree(field(t_, unravel(z), None))[0]

        J = jax.jacfwd(f_flat, argnums=1)(t, flat)
        f_t = jax.jvp(lambda t_: f_flat(t_, flat), (t,), (jnp.ones_like(t),))[1]
        return J, unravel(f_t)

    def factorise(self, field, J, hg):
        lu = jax.scipy.linalg.lu_factor(jnp.eye(J.shape[0]) / hg - J)

        def solve(b):
            flat, unravel = ravel_pytree(b)
            return unravel(jax.scipy.linalg.lu_solve(lu, flat))

        return solve

    def matvec(self, field, J, hg, x):
        flat, unravel = ravel_pytree(x)
        return unravel(flat / hg - J @ flat)


def _current_and_totals_rows(field, t, y, I):
    """(dI/dy, d(totals)/dy, d(totals)/dI) of a cell field at current I: dI/dy is None where the
    current does not depend on the state; the totals' rows (`N_TOTALS`) include it otherwise."""
    I_y = jax.grad(lambda y_: field.current(t, y_))(y) if field.state_dependent else None
    Q_y, Q_I = jax.jacrev(lambda y_, I_: field.totals(t, y_, I_), argnums=(0, 1))(y, I)
    if I_y is not None:
        Q_y = Q_y + Q_I[:, None] * I_y
    return I_y, Q_y, Q_I


def _shift(v, s, fill):
    """v[i - s] (s > 0) or v[i + |s|] (s < 0) along the first axis, `fill` outside."""
    pad = jnp.full((abs(s),) + v.shape[1:], fill, v.dtype)
    return jnp.concatenate([pad, v[:-s]]) if s > 0 else jnp.concatenate([v[-s:], pad])


def _pcr_factor(a, b, c):
    """Parallel cyclic reduction of the tridiagonal matrix with sub-, main and super-diagonal
    a, b, c (a[i] = A[i, i - 1], c[i] = A[i, i + 1]; a[0] = c[-1] = 0): at level l every row
    eliminates its neighbours 2^l away, so after ceil(log2 n) levels the system is diagonal.
    O(n log n) elementwise operations and no sequential loop over the rows, so it vectorises
    under `vmap` and on accelerators. No pivoting: for matrices like I / (h gamma) - J of a
    diffusion operator (diagonally dominant), as the DFN's Thomas sweeps. Returns the levels'
    multipliers and the final diagonal (`_pcr_solve`)."""
    levels, s = [], 1
    while s < b.shape[0]:
        alpha, gamma = -a / _shift(b, s, 1.0), -c / _shift(b, -s, 1.0)
        b = b + alpha * _shift(c, s, 0.0) + gamma * _shift(a, -s, 0.0)
        a, c = alpha * _shift(a, s, 0.0), gamma * _shift(c, -s, 0.0)
        levels.append((alpha, gamma))
        s *= 2
    return levels, b


def _pcr_solve(factor, r):
    """The solution of the factorised tridiagonal system (`_pcr_factor`) for the right-hand
    side r (n,) or (n, k): linear in r."""
    levels, b = factor
    col = (slice(None),) + (None,) * (r.ndim - 1)
    s = 1
    for alpha, gamma in levels:
        r = r + alpha[col] * _shift(r, s, 0.0) + gamma[col] * _shift(r, -s, 0.0)
        s *= 2
    return r / b[col]


def _small_inverse(S):
    """The inverse of a 1x1, 2x2 or 3x3 matrix by its adjugate: no LAPACK call, which jaxlib
    runs on XLA's thread pool and which can stall when batched inside the solver's loop."""
    k = S.shape[0]
    if k == 1:
        return 1.0 / S
    if k == 2:
        return _inv2(S)
    cof = [[S[(i + 1) % 3, (j + 1) % 3] * S[(i + 2) % 3, (j + 2) % 3]
            - S[(i + 1) % 3, (j + 2) % 3] * S[(i + 2) % 3, (j + 1) % 3] for j in range(3)] for i in range(3)]
    det = sum(S[0, j] * cof[0][j] for j in range(3))
    return jnp.stack([jnp.stack([cof[j][i] for j in range(3)]) for i in range(3)]) / det


class BandedSolve(_LinearSolve):
    """Solve (I / (h gamma) - J) x = b for a model that declares the sparsity of its right-hand
    side (`jacobian_pattern`: the SPM and SPMe), in O(n) instead of a dense LU's O(n^3).

    The pattern is ((start, stop), ...) runs of the state whose rows depend, at fixed current,
    only on the unknowns i - 1, i and i + 1 of the same run and on the temperature; the
    temperature's position; whether it evolves. J is then a tridiagonal matrix plus the
    temperature's column and row and, for a current that depends on the state (voltage and
    power control), a rank-one term d(rhs)/dI x dI/dy. It is built from five Jacobian-vector
    products (three colours: the three unknowns a row sees have three different positions mod
    3; the temperature; the current) and one vector-Jacobian product (the temperature's row),
    instead of one product per unknown; the solve is a tridiagonal one (parallel cyclic
    reduction, `_pcr_factor`) with the low-rank rest by the Sherman-Morrison-Woodbury formula.
    The running totals' rows (`N_TOTALS`) do not feed back into the state: their columns are
    zero, and their unknowns follow from the state's. For the SPMe (101 unknowns) a Rodas4 step
    costs less than half of what a dense Jacobian and LU cost (docs/dfn.md)."""

    pattern: tuple = eqx.field(static=True)

    def _layout(self, n):
        runs, t_pos, thermal = self.pattern
        colour = -np.ones(n, int)
        for a, b in runs:
            colour[a:b] = np.arange(b - a) % 3
        # band entries J[i, i + d] (d = -1, 0, 1) that lie in one run, by diagonal
        band = [np.zeros(n, bool) for _ in range(3)]
        for a, b in runs:
            for k, d in enumerate((-1, 0, 1)):
                band[k][max(a, a - d):min(b, b - d)] = True
        return colour, band, t_pos, thermal

    def jacobian(self, field, t, state):
        y, q = state
        n = y.shape[0]
        colour, band, t_pos, thermal = self._layout(n)
        e_T = np.zeros(n)
        e_T[t_pos] = 1.0
        ty = np.stack([colour == c for c in range(3)] + [e_T, np.zeros(n)]).astype(y.dtype)
        tI = np.zeros(len(ty), y.dtype)
        tI[-1] = 1.0
        I = field.current(t, y)
        _, lin = jax.linearize(lambda y_, I_: field.rhs(t, y_, I_), y, I)
        JV = jax.vmap(lin)(jnp.asarray(ty), jnp.asarray(tI))  # (5, n)
        i = np.arange(n)
        # J[i, i + d] is row i of the product of the colour of i + d; the temperature's own
        # entry J_TT on the diagonal
        diags = [jnp.where(band[k], JV[np.maximum(colour[np.clip(i + d, 0, n - 1)], 0), i], 0.0)
                 for k, d in enumerate((-1, 0, 1))]
        diags[1] = diags[1].at[t_pos].set(JV[3][t_pos])
        parts = {"band": jnp.stack(diags), "col_T": JV[3].at[t_pos].set(0.0)}
        if thermal:
            parts["row_T"] = jax.linear_transpose(lin, y, I)(jnp.asarray(e_T, y.dtype))[0].at[t_pos].set(0.0)
        I_y, parts["Q_y"], _ = _current_and_totals_rows(field, t, y, I)
        if I_y is not None:
            parts["F_I"], parts["I_y"] = JV[4], I_y
        f_t = jax.jvp(lambda t_: field(t_, state, None), (t,), (jnp.ones_like(t),))[1]
        return parts, f_t

    def _low_rank(self, parts, n, dtype):
        """(U, V) with I / hg - J = (its tridiagonal part) + U V^T: as columns, the temperature's
        column, its row and the current's rank-one term (those the system has)."""
        t_pos = self.pattern[1]
        e_T = jnp.zeros(n, dtype).at[t_pos].set(1.0)
        U, V = [parts["col_T"]], [e_T]
        if "row_T" in parts:
            U.append(e_T)
            V.append(parts["row_T"])
        if "F_I" in parts:
            U.append(parts["F_I"])
            V.append(parts["I_y"])
        return -jnp.stack(U, axis=1), jnp.stack(V, axis=1)

    def factorise(self, field, parts, hg):
        lower, diag, upper = parts["band"]
        n = diag.shape[0]
        U, V = self._low_rank(parts, n, diag.dtype)  # A = tridiag(-lower, 1 / hg - diag, -upper) + U V^T
        tri = functools.partial(_pcr_solve, _pcr_factor(-lower, 1.0 / hg - diag, -upper))
        Z = tri(U)  # (n, k)
        S_inv = _small_inverse(jnp.eye(U.shape[1], dtype=U.dtype) + V.T @ Z)
        Q_y = parts["Q_y"]

        def solve(b):
            b_y, b_q = b
            x0 = tri(b_y)
            x_y = x0 - Z @ (S_inv @ (V.T @ x0))
            return x_y, hg * (b_q + Q_y @ x_y)

        return solve

    def matvec(self, field, parts, hg, x):
        x_y, x_q = x
        lower, diag, upper = parts["band"]
        Jx = diag * x_y + lower * _shift(x_y, 1, 0.0) + upper * _shift(x_y, -1, 0.0)
        U, V = self._low_rank(parts, x_y.shape[0], x_y.dtype)
        Jx = Jx - U @ (V.T @ x_y)
        return x_y / hg - Jx, x_q / hg - parts["Q_y"] @ x_y


def _block_layout(structure):
    """Static layout of the macro unknowns as 2x2 blocks along x: `pos[k, a]` is the position in
    the macro vector of unknown a (0 electrolyte, 1 potential) at x node k, or -1 where there is
    none (the separator has no potential; its block gets a dummy unknown). `t_macro` is the
    temperature's position in the macro vector."""
    macro_x, kind = structure.macro_x, structure.macro_kind
    n_x = int(macro_x.max()) + 1
    pos = -np.ones((n_x, 2), int)
    for i, (x, k) in enumerate(zip(macro_x, kind)):
        if k != 2:
            pos[x, k] = i
    return pos, int(np.flatnonzero(kind == 2)[0])


def _jacobian_parts(field, t, y, structure):
    """The Jacobian of a structured cell field, from coloured products.

    Returns a dict with
    - `P`: per electrode, the particle blocks d(rhs_particle)/d(particle), tridiagonal: (lower,
      diagonal, upper), each (n_nodes, n_r) (the lower one's first and upper one's last entry 0);
    - `B`: per electrode, (n_nodes, n_r, 3) d(rhs_particle)/d(local macro unknowns);
    - `C`: per electrode, (n_nodes, 3, n_r) d(local macro rhs)/d(particle);
    - `M`: (n_x, 3, 2, 2) the macro Jacobian at fixed temperature in 2x2 blocks of `_block_layout`:
      `M[k, d, a, b]` = d(rhs of unknown a at node k)/d(unknown b at node k + d - 1);
    - `J_zT`, `J_Tz`: (n_x, 2) the temperature column and row in the same layout, `J_TT`;
    - `F_I`: d(rhs)/dI (n,), `I_y`: dI/dy (n,; None when the current does not depend on the
      state), `I_t`: dI/dt;
    - `Q_y`: (N_TOTALS, n) the running totals' rows, d(totals)/dy with the current's
      dependence on the state included, and `Q_I`: (N_TOTALS,) d(totals)/dI.
    """
    n = structure.n
    macro, macro_x, kind = structure.macro, structure.macro_x, structure.macro_kind
    pos, t_macro = _block_layout(structure)
    t_pos = int(macro[t_macro])
    n_x = pos.shape[0]

    # tangents: 3 particle colours (shell index mod 3), 3 x-colours for each of the two macro
    # kinds, the temperature, and the current
    tangents = []
    for c in range(3):
        v = np.zeros(n)
        for idx in structure.micro:
            v[idx[:, np.arange(idx.shape[1]) % 3 == c]] = 1.0
        tangents.append(v)
    for k in (0, 1):
        for c in range(3):
            v = np.zeros(n)
            v[macro[(kind == k) & (macro_x % 3 == c)]] = 1.0
            tangents.append(v)
    v = np.zeros(n)
    v[t_pos] = 1.0
    tangents.append(v)
    ty = np.stack(tangents + [np.zeros(n)])
    tI = np.zeros(len(ty))
    tI[-1] = 1.0

    I = field.current(t, y)
    _, lin = jax.linearize(lambda y_, I_: field.rhs(t, y_, I_), y, I)
    JV = jax.vmap(lin)(jnp.asarray(ty, y.dtype), jnp.asarray(tI, y.dtype))  # (11, n)
    if structure.thermal:
        row_T = jax.linear_transpose(lin, y, I)(jnp.zeros(n, y.dtype).at[t_pos].set(1.0))[0]
    else:  # the temperature does not evolve: its row is zero
        row_T = jnp.zeros(n, y.dtype)
    I_y, Q_y, Q_I = _current_and_totals_rows(field, t, y, I)
    I_t = jax.jvp(lambda t_: field.current(t_, y), (t,), (jnp.ones_like(t),))[1]

    micro_col = JV[0:3]
    macro_col = JV[3:9].reshape(2, 3, n)  # [kind of the column, x colour of the column, row]
    col_T, F_I = JV[9], JV[10]

    # The entries are read from the products with the static index sets taken as slices
    # (`_take`) and the colour chosen per node or shell by a mask: no gathers (docs/dfn.md).
    def by_colour(values, colour):
        """values[c] where colour == c (colour broadcasts against the values)."""
        return sum(jnp.where(colour == c, values[c], 0.0) for c in range(3))

    # macro blocks: the column's node k + d - 1 has colour (k + d - 1) mod 3, so its entries are
    # read from that colour's product at the row's position
    k = np.arange(n_x)
    rows = np.where(pos >= 0, macro[np.maximum(pos, 0)], -1)  # state positions of the block rows
    at_rows = [[_take_cols(macro_col[b, c], rows) for c in range(3)] for b in (0, 1)]  # (n_x, 2) each
    M = []
    for d in (-1, 0, 1):
        kc = k + d
        valid = (pos >= 0)[:, :, None] & (kc >= 0)[:, None, None] & (kc < n_x)[:, None, None]
        valid = valid & (pos[np.clip(kc, 0, n_x - 1)] >= 0)[:, None, :]
        vals = jnp.stack([by_colour(at_rows[b], (kc % 3)[:, None]) for b in (0, 1)], axis=-1)
        M.append(jnp.where(valid, vals, 0.0))
    M = jnp.stack(M, axis=1)
    J_zT = _take_cols(col_T, rows)
    J_Tz = _take_cols(row_T, rows)

    P, B, C = [], [], []
    for idx, local in zip(structure.micro, structure.local):
        nr = idx.shape[1]
        r = np.arange(nr)
        # the tridiagonal particle block: entry (i, j) is colour j mod 3 read at row idx[k, i]
        rws = [_take(micro_col[c], idx) for c in range(3)]  # (n_nodes, nr) each
        P.append(tuple(jnp.where((r + d >= 0) & (r + d < nr), by_colour(rws, (r + d) % 3), 0.0) for d in (-1, 0, 1)))
        # B: columns (c_e, dphi) of the node's x colour, and the temperature column
        xcol = (macro_x[local[:, 0]] % 3)[:, None]
        B.append(jnp.stack(
            [by_colour([_take(macro_col[b, c], idx) for c in range(3)], xcol) for b in (0, 1)] + [_take(col_T, idx)], axis=-1
        ))
        # C: macro rows (c_e, dphi) of the node see the two outermost shells; temperature row
        # from the transposed product (all shells)
        outer = [_take_cols(micro_col[sh % 3], macro[local[:, :2]]) for sh in (nr - 2, nr - 1)]  # (n_nodes, 2) each
        c_rows = jnp.concatenate([jnp.zeros((idx.shape[0], 2, nr - 2), y.dtype), jnp.stack(outer, axis=-1)], axis=-1)
        C.append(jnp.concatenate([c_rows, _take(row_T, idx)[:, None, :]], axis=1))
    return {"P": P, "B": B, "C": C, "M": M, "J_zT": J_zT, "J_Tz": J_Tz, "J_TT": row_T[t_pos],
            "F_I": F_I, "I_y": I_y, "I_t": I_t, "Q_y": Q_y, "Q_I": Q_I}


def _inv2(S):
    """Inverses of a batch of 2x2 matrices (..., 2, 2)."""
    a, b, c, d = S[..., 0, 0], S[..., 0, 1], S[..., 1, 0], S[..., 1, 1]
    det = a * d - b * c
    return jnp.stack([jnp.stack([d, -b], -1), jnp.stack([-c, a], -1)], -2) / det[..., None, None]


def _block_thomas_factor(L, D, U):
    """Block LU (no pivoting) of a block-tridiagonal matrix with 2x2 blocks, (n, 2, 2) each:
    returns the inverted pivots S_k^-1 and C_k = S_k^-1 U_k."""

    def body(C_prev, blocks):
        L_k, D_k, U_k = blocks
        S_inv = _inv2(D_k - L_k @ C_prev)
        C_k = S_inv @ U_k
        return C_k, (S_inv, C_k)

    _, (S_inv, C) = jax.lax.scan(body, jnp.zeros_like(D[0]), (L, D, U))
    return L, S_inv, C


def _block_thomas_solve(fac, r):
    """Solve with `_block_thomas_factor`; `r` is (n, 2)."""
    L, S_inv, C = fac

    def fwd(g_prev, blocks):
        L_k, S_k, r_k = blocks
        g = S_k @ (r_k - L_k @ g_prev)
        return g, g

    def back(x_next, blocks):
        g_k, C_k = blocks
        x = g_k - C_k @ x_next
        return x, x

    _, g = jax.lax.scan(fwd, jnp.zeros_like(r[0]), (L, S_inv, r))
    return jax.lax.scan(back, jnp.zeros_like(r[0]), (g, C), reverse=True)[1]


def _thomas_factor(lower, diag, upper):
    """Forward sweep of the Thomas algorithm for tridiagonal systems, batched over leading
    axes (last axis: the unknowns). Pure XLA operations (a `lax.scan` over the unknowns),
    elementwise across the batch. Returns (modified upper diagonal, pivots)."""
    n = diag.shape[-1]
    lo, di, up = (jnp.moveaxis(x, -1, 0) for x in (lower, diag, upper))

    def body(prev, k):
        c_prev = prev
        piv = di[k] - lo[k] * c_prev
        c = up[k] / piv
        return c, (c, piv)

    _, (c, piv) = jax.lax.scan(body, jnp.zeros_like(di[0]), jnp.arange(n))
    return c, piv, lo  # all with the unknowns first


def _thomas_solve(fac, rhs):
    """Solve with a `_thomas_factor` factorisation; `rhs` has the unknowns on axis -1 or, for
    several right-hand sides, on axis -2 (..., n, m)."""
    c, piv, lo = fac
    multi = rhs.ndim == c.ndim + 1
    r = jnp.moveaxis(rhs, -2 if multi else -1, 0)
    expand = (lambda x: x[..., None]) if multi else (lambda x: x)

    def fwd(prev, k):
        d = (r[k] - expand(lo[k]) * prev) / expand(piv[k])
        return d, d

    _, d = jax.lax.scan(fwd, jnp.zeros_like(r[0]), jnp.arange(r.shape[0]))

    def back(nxt, k):
        x = d[k] - expand(c[k]) * nxt
        return x, x

    _, x = jax.lax.scan(back, jnp.zeros_like(r[0]), jnp.arange(r.shape[0]), reverse=True)
    return jnp.moveaxis(x, 0, -2 if multi else -1)


class StructuredSolve(_LinearSolve):
    """Solve (I / (h gamma) - J) x = b for a cell field whose model has a `structure`
    (`jaxcell.models.DFNStructure`): the particle blocks are eliminated node by node
    (tridiagonal Thomas sweeps, vectorised over the nodes), leaving the macro system of the
    electrolyte and the potentials, block-tridiagonal in x with 2x2 blocks and bordered by the
    temperature, which a block Thomas sweep solves in O(n_x): faster than a dense LU of the
    macro system even for one cell, and by far for batches (docs/dfn.md)."""

    def jacobian(self, field, t, state):
        parts = _jacobian_parts(field, t, state[0], field.model.structure)
        return parts, (parts["F_I"] * parts["I_t"], parts["Q_I"] * parts["I_t"])

    def factorise(self, field, parts, hg):
        return _structured_factor(parts, field.model.structure, hg)

    def matvec(self, field, parts, hg, x):
        return _structured_matvec(parts, field.model.structure, hg, x)


# index sets with more runs than this are gathered and scattered as before
_MAX_RUNS = 4


def _runs(idx):
    """A static 1-d index array as runs of consecutive indices: (offset in idx, first index,
    length); entries -1 (no unknown) form runs with first index -1."""
    runs, start = [], 0
    for k in range(1, len(idx) + 1):
        if k == len(idx) or not ((idx[k] == idx[k - 1] + 1 and idx[k - 1] >= 0) or (idx[k] < 0 and idx[k - 1] < 0)):
            runs.append((start, int(idx[start]), k - start))
            start = k
    return runs


def _repeated(flat):
    """Whether a static index array is one valid entry repeated (a node's temperature)."""
    return flat.size > 1 and flat[0] >= 0 and bool(np.all(flat == flat[0]))


# Gathers and scatters with static index arrays are slow on XLA's CPU backend under `vmap`,
# about twice the cost of slices and a concatenation (docs/dfn.md). The state's index sets are
# mostly a few consecutive runs, so these take and put them as slices.
def _take(x, idx):
    """x[idx] along the first axis for a static integer array idx, zero where idx is -1."""
    idx = np.asarray(idx)
    flat = idx.reshape(-1)
    if _repeated(flat):
        out = jnp.broadcast_to(x[int(flat[0])], flat.shape + x.shape[1:])
    elif len(runs := _runs(flat)) > _MAX_RUNS:
        out = jnp.where((flat >= 0).reshape((-1,) + (1,) * (x.ndim - 1)), x[np.maximum(flat, 0)], 0.0)
    else:
        out = jnp.concatenate([
            jnp.zeros((n,) + x.shape[1:], x.dtype) if i < 0 else x[i : i + n] for _, i, n in runs
        ])
    return out.reshape(idx.shape + x.shape[1:])


def _put(x, idx, v, add=False):
    """x.at[idx].set(v) (or .add) along the first axis for a static integer array idx without
    repeated entries, skipping entries -1; an index repeated all along (the temperature) is
    added once with the sum of v."""
    flat = np.asarray(idx).reshape(-1)
    v = jnp.reshape(v, flat.shape + x.shape[1:])
    if add and _repeated(flat):
        return x.at[int(flat[0])].add(jnp.sum(v, axis=0))
    runs = _runs(flat)
    if len(runs) > _MAX_RUNS:
        keep = flat >= 0
        return x.at[flat[keep]].add(v[keep]) if add else x.at[flat[keep]].set(v[keep], unique_indices=True)
    for at, i, n in runs:
        if i >= 0:
            new = v[at : at + n] + (x[i : i + n] if add else 0.0)
            x = jax.lax.dynamic_update_slice_in_dim(x, new, i, axis=0)
    return x


def _take_cols(x, idx):
    """x[idx] for a static (n, k) index array, column by column (each column is a few runs)."""
    return jnp.stack([_take(x, idx[:, a]) for a in range(idx.shape[1])], axis=1)


def _put_cols(x, idx, v, add=False):
    """x.at[idx].set(v) (or .add) for a static (n, k) index array, column by column."""
    for a in range(idx.shape[1]):
        x = _put(x, idx[:, a], v[:, a], add)
    return x


def _structured_matvec(parts, s, hg, x):
    """(I / hg - J) x for the Jacobian J of a structured cell field given by `_jacobian_parts`,
    x = (x_y, x_q): the same matrix `_structured_factor` inverts, as a product that is cheap to
    differentiate in the parts."""
    xy, xq = x
    macro = s.macro
    pos, t_macro = _block_layout(s)
    z = _take(xy, macro)
    zb = _take_cols(z, pos)  # (n_x, 2), zero for the separator's dummy potential
    xT = z[t_macro]
    M = parts["M"]
    zpad = jnp.pad(zb, ((1, 1), (0, 0)))
    out_b = sum(jnp.einsum("kab,kb->ka", M[:, d], zpad[d : d + zb.shape[0]]) for d in range(3))
    out_b = out_b + parts["J_zT"] * xT
    out_T = jnp.sum(parts["J_Tz"] * zb) + parts["J_TT"] * xT
    jz = _put_cols(_put(jnp.zeros_like(z), np.array([t_macro]), out_T), pos, out_b)
    jy = jnp.zeros_like(xy)
    for (lo, di, up), B, C, idx, local in zip(parts["P"], parts["B"], parts["C"], s.micro, s.local):
        u = _take(xy, idx)
        pu = di * u + lo * jnp.pad(u[:, :-1], ((0, 0), (1, 0))) + up * jnp.pad(u[:, 1:], ((0, 0), (0, 1)))
        jy = _put(jy, idx, pu + jnp.einsum("krb,kb->kr", B, _take_cols(z, local)))
        jz = _put_cols(jz, local, jnp.einsum("kar,kr->ka", C, u), add=True)  # local[:, 2] is the temperature
    jy = _put(jy, macro, jz)
    xq = xq / hg - parts["Q_y"] @ xy
    if parts["I_y"] is None:  # the current does not depend on the state
        return xy / hg - jy, xq
    return xy / hg - jy - parts["F_I"] * jnp.dot(parts["I_y"], xy), xq


def _particle_groups(parts, s):
    """The particle blocks as groups swept together: both electrodes in one group (one Thomas
    sweep over all nodes) when their particles have the same number of shells."""
    if len({idx.shape[1] for idx in s.micro}) > 1:
        return parts["P"], parts["B"], parts["C"], s.micro, s.local
    cat = lambda xs: jnp.concatenate(xs, axis=0)
    P = tuple(cat([P[d] for P in parts["P"]]) for d in range(3))
    return (P,), (cat(parts["B"]),), (cat(parts["C"]),), (np.concatenate(s.micro),), (np.concatenate(s.local),)


def _structured_factor(parts, s, hg):
    """Factorise I / hg - J (J from `_jacobian_parts`, the current's dependence included) and
    return its solve, a linear function of b = (b_y, b_q). The totals q do not appear on the
    right-hand side, so their columns of J are zero and x_q follows from x_y."""
    macro = s.macro
    pos, t_macro = _block_layout(s)
    # the macro matrix G = I / hg - J in blocks: lower, diagonal, upper, the temperature
    # column and row and corner; then the particles' Schur complements -C Guu^-1 B
    Ps, Bs, Cs, micro, local_ = _particle_groups(parts, s)
    M = parts["M"]
    Gd = jnp.eye(2) / hg - M[:, 1]
    G_zT, G_Tz, G_TT = -parts["J_zT"], -parts["J_Tz"], 1.0 / hg - parts["J_TT"]
    facs, Zs = [], []
    for P, B, C, local in zip(Ps, Bs, Cs, local_):
        fac = _thomas_factor(-P[0], 1.0 / hg - P[1], -P[2])
        # Schur complement: S = Gzz - Gzu Guu^{-1} Guz with Guz = -B, Gzu = -C
        Z = _thomas_solve(fac, B)  # Guu^{-1} B  (n_nodes, nr, 3)
        corr = jnp.einsum("kar,krb->kab", C, Z)  # C Guu^{-1} B  (n_nodes, 3, 3) in (c_e, dphi, T)
        xk = s.macro_x[local[:, 0]]
        Gd = _put(Gd, xk, -corr[:, :2, :2], add=True)
        G_zT = _put(G_zT, xk, -corr[:, :2, 2], add=True)
        G_Tz = _put(G_Tz, xk, -corr[:, 2, :2], add=True)
        G_TT = G_TT - jnp.sum(corr[:, 2, 2])
        facs.append(fac)
        Zs.append(Z)

    bt = _block_thomas_factor(-M[:, 0], Gd, -M[:, 2])
    w_T = _block_thomas_solve(bt, G_zT)  # A^-1 (temperature column)
    s_T = G_TT - jnp.sum(G_Tz * w_T)

    def macro_solve(rz):
        r = _take_cols(rz, pos)
        z1 = _block_thomas_solve(bt, r)
        zT = (rz[t_macro] - jnp.sum(G_Tz * z1)) / s_T  # bordered by the temperature
        z = z1 - w_T * zT
        return _put_cols(_put(jnp.zeros_like(rz), np.array([t_macro]), zT), pos, z)

    def solve_y(b):
        u0 = [_thomas_solve(fac, _take(b, idx)) for fac, idx in zip(facs, micro)]
        rz = _take(b, macro)
        for C, u, local in zip(Cs, u0, local_):
            rz = _put_cols(rz, local, jnp.einsum("kar,kr->ka", C, u), add=True)
        z = macro_solve(rz)
        x = _put(jnp.zeros_like(b), macro, z)
        for Z, u, idx, local in zip(Zs, u0, micro, local_):
            x = _put(x, idx, u + jnp.einsum("krb,kb->kr", Z, _take_cols(z, local)))
        return x

    F_I, I_y, Q_y = parts["F_I"], parts["I_y"], parts["Q_y"]

    def totals(bq, xy):  # the totals' rows: x_q / hg - Q_y x_y = b_q
        return hg * (bq + Q_y @ xy)

    if I_y is None:  # the current does not depend on the state: no rank-one term
        def solve_fixed(b):
            xy = solve_y(b[0])
            return xy, totals(b[1], xy)

        return solve_fixed

    # the current's dependence on the state is a rank-one term: Sherman-Morrison
    w = solve_y(F_I)
    denom = 1.0 - jnp.dot(I_y, w)

    def solve(b):
        by, bq = b
        x0 = solve_y(by)
        xy = x0 + w * (jnp.dot(I_y, x0) / denom)
        return xy, totals(bq, xy)

    return solve


class RodasInterpolation(diffrax.AbstractLocalInterpolation):
    """Rodas4's continuous extension on one step: y(theta) = (1 - theta) y0
    + theta (y1 + (1 - theta) (d1 + theta d2)), theta = (t - t0) / (t1 - t0)."""

    t0: float
    t1: float
    y0: object
    y1: object
    d1: object
    d2: object

    def evaluate(self, t0, t1=None, left=True):
        del left
        if t1 is not None:
            return jax.tree.map(lambda a, b: a - b, self.evaluate(t1), self.evaluate(t0))
        # a step of zero length (see `Rodas4.step`): theta 0, no 0 / 0 in its derivatives
        dt = self.t1 - self.t0
        th = jnp.where(dt > 0, (t0 - self.t0) / jnp.where(dt > 0, dt, 1.0), 0.0)
        return jax.tree.map(
            lambda y0, y1, d1, d2: (1 - th) * y0 + th * (y1 + (1 - th) * (d1 + th * d2)), self.y0, self.y1, self.d1, self.d2
        )


_ROWS = (np.arange(1, 6), _A_MAT[1:], _C_MAT[1:], np.asarray(_ALPHA[1:]), np.asarray(_GAMMAS[1:]))
_tree = jax.tree.map


def _stage_rhs(field, t0, h, y0, K, f_t, row):
    """The right-hand side of stage i >= 1: f(t0 + alpha_i h, y0 + K a_i) + gamma_i h df/dt
    + K c_i / h, for one row (i, a_i, c_i, alpha_i, gamma_i) of the coefficient tables."""
    _, a, c, alpha, g = row
    yi = _tree(lambda y, Kl: y + Kl @ a, y0, K)
    fi = field(t0 + alpha * h, yi, None)
    return _tree(lambda f, ft, Kl: f + g * h * ft + Kl @ (c / h), fi, f_t, K)


def _run_stages(field, t0, h, y0, f0, solve, f_t):
    """The six stages K[..., i] (on a last axis) for a given stage solve. Stage 0 from f0,
    stages 1-5 in one scan over the coefficient rows: one traced stage (right-hand side, linear
    solve and their derivatives) instead of five unrolled ones, for a shorter compile
    (docs/dfn.md). With the stages on a last axis their combinations are matrix-vector products
    K @ coefficients also under `vmap` (with the stage axis first they are not, and vmapped
    steps are slower)."""
    k0 = solve(_tree(lambda f, ft: f + _GAMMAS[0] * h * ft, f0, f_t))
    K = _tree(lambda k: jnp.zeros(k.shape + (6,), k.dtype).at[..., 0].set(k), k0)

    def stage(K, row):
        k = solve(_stage_rhs(field, t0, h, y0, K, f_t, row))
        return _tree(lambda Kl, kl: Kl.at[..., row[0]].set(kl), K, k), None

    return jax.lax.scan(stage, K, _ROWS)[0]


@eqx.filter_custom_vjp
def _stages(vjp_arg, linear_solve):
    """Rodas4's stages with a reverse-mode rule written for them (`_stages_bwd`). vjp_arg =
    (field, t0, h, y0, f0); the field's current must hold its arrays as leaves (closure
    converted), not in a closure."""
    field, t0, h, y0, f0 = vjp_arg
    data, f_t = linear_solve.jacobian(field, t0, y0)
    return _run_stages(field, t0, h, y0, f0, linear_solve.factorise(field, data, h * _GAMMA), f_t)


@_stages.def_fwd
def _stages_fwd(perturbed, vjp_arg, linear_solve):
    field, t0, h, y0, f0 = vjp_arg
    data, f_t = linear_solve.jacobian(field, t0, y0)
    # the solve with its factors as leaves, kept for the transposed solves
    solve = eqx.filter_closure_convert(linear_solve.factorise(field, data, h * _GAMMA), f0)
    K = _run_stages(field, t0, h, y0, f0, solve, f_t)
    return K, (K, f_t, solve)


def _all_finite(tree):
    """Whether every entry of every array of `tree` is finite (a boolean scalar)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _all_zero(tree):
    """Whether every entry of every array of `tree` is zero (a boolean scalar)."""
    return ~jnp.any(jnp.stack([jnp.any(x != 0) for x in jax.tree.leaves(tree)]))


def _keep_perturbed(grads, perturbed):
    """The cotangents of the perturbed leaves of a filter_custom_vjp's vjp_arg; None elsewhere."""
    return _tree(lambda g, p: g if p else None, grads, perturbed, is_leaf=lambda v: v is None)


@eqx.filter_custom_vjp
def _field_value(vjp_arg):
    """The field at a step's end, field(t, y) (the next step's first stage), with a reverse rule
    that returns exactly zero for a zero cotangent. A rejected trial step can end at a finite
    state far outside the physical range (entries of -9e19 were seen at 16C), where the
    field's derivative is not finite; diffrax discards the step with a select whose zero
    cotangent would meet that derivative (0 x inf = NaN) in JAX's own rule."""
    field, t, y = vjp_arg
    return field(t, y, None)


@_field_value.def_fwd
def _field_value_fwd(perturbed, vjp_arg):
    field, t, y = vjp_arg
    return field(t, y, None), None


@_field_value.def_bwd
def _field_value_bwd(residuals, ct, perturbed, vjp_arg):
    diff, nondiff = eqx.partition(vjp_arg, eqx.is_inexact_array)

    def value(diff_):
        field, t, y = eqx.combine(diff_, nondiff)
        return field(t, y, None)

    out, vjp = jax.vjp(value, diff)
    ct = _tree(lambda c, o: jnp.zeros_like(o) if c is None else c, ct, out, is_leaf=lambda v: v is None)
    (grads,) = vjp(ct)
    grads = _tree(lambda g: jnp.where(_all_zero(ct), 0.0, g), grads)
    return _keep_perturbed(grads, perturbed)


def _field_jvps(field, t, state, directions):
    """Products of the field's derivative with the directions (dt, dstate) stacked on a last
    axis: J v (dt = 0) and df/dt (dt = 1, dstate = 0) for the full state, current included."""
    dt, ds = directions
    return jax.vmap(
        lambda a, b: jax.jvp(lambda t_, s_: field(t_, s_, None), (t, state), (a, b))[1], in_axes=(0, -1), out_axes=-1
    )(dt, ds)


@_stages.def_bwd
def _stages_bwd(residuals, K_bar, perturbed, vjp_arg, linear_solve):
    """Reverse mode through the stages, from the stage equations W k_i = r_i with
    W = I / (h gamma) - J(t0, y0): with lam_i = W^-T k_bar_i, r_i gets the cotangent lam_i and
    W gets -lam_i k_i^T. The stages are swept backwards in one scan: a transposed solve and one
    VJP of the stage's right-hand side each (its state, stage, parameter, time and step-size
    parts). The rest is one gradient of a scalar, W's part sum_i lam_i . J k_i (-lam_i . dW k_i
    with dW = -dJ) plus f_t_bar . df/dt, with J k_i and df/dt the field's directional
    derivatives: a second-order product of the field, never the derivative of the assembled
    Jacobian."""
    K, f_t, solve = residuals
    field, t0, h, y0, _ = vjp_arg
    solve_T = jax.linear_transpose(solve, _tree(jnp.zeros_like, y0))
    K_bar = _tree(lambda kb, k: jnp.zeros_like(k) if kb is None else kb, K_bar, K, is_leaf=lambda v: v is None)
    used = ~_all_zero(K_bar)  # see the end

    diff, nondiff = eqx.partition((field, t0, h), eqx.is_inexact_array)

    def stage_rhs(diff_, y0_, K_, row):
        field_, t0_, h_ = eqx.combine(diff_, nondiff)
        return _stage_rhs(field_, t0_, h_, y0_, K_, f_t, row)

    def back(carry, row):
        # one VJP of the stage's right-hand side gives its state, stage and parameter parts
        K_bar, y0_bar, diff_bar = carry
        lam = solve_T(_tree(lambda kb: kb[..., row[0]], K_bar))[0]
        d_diff, d_y0, d_K = jax.vjp(lambda *a: stage_rhs(*a, row), diff, y0, K)[1](lam)
        return (_tree(jnp.add, K_bar, d_K), _tree(jnp.add, y0_bar, d_y0), _tree(jnp.add, diff_bar, d_diff)), lam

    rows = tuple(np.asarray(x)[::-1] for x in _ROWS)
    init = (K_bar, _tree(jnp.zeros_like, y0), _tree(jnp.zeros_like, diff))
    (K_bar, y0_bar, rhs_bar), lams = jax.lax.scan(back, init, rows)
    lam0 = solve_T(_tree(lambda kb: kb[..., 0], K_bar))[0]
    Lam = _tree(lambda l0, ls: jnp.concatenate([l0[..., None], jnp.moveaxis(ls[::-1], 0, -1)], axis=-1), lam0, lams)
    gammas = np.asarray(_GAMMAS)
    ft_bar = _tree(lambda L: h * (L @ gammas), Lam)  # r_i has gamma_i h df/dt
    dot = lambda a, b: sum(jnp.vdot(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    # the six stages (J k_i) and, for a field that depends on time, the time direction (df/dt)
    timed = field.time_dependent
    directions = (jnp.zeros(6 + timed, h.dtype).at[-1].set(1.0 if timed else 0.0),
                  _tree(lambda k: jnp.concatenate([k, jnp.zeros_like(k[..., :timed])], axis=-1), K))

    def psi(diff_, y0_):
        field_, t0_, _ = eqx.combine(diff_, nondiff)
        prods = _field_jvps(field_, t0_, y0_, directions)
        W_part = dot(_tree(lambda P: P[..., :6], prods), Lam)
        return W_part + dot(_tree(lambda P: P[..., 6], prods), ft_bar) if timed else W_part

    W_bar, y0_W = jax.grad(psi, argnums=(0, 1))(diff, y0)
    field_bar, t0_bar, h_bar = _tree(jnp.add, rhs_bar, W_bar)
    # W = I / (h gamma) - J: its step-size part; r_0 = f0 + gamma_0 h df/dt
    h_bar = h_bar + dot(Lam, K) / (h * h * _GAMMA) + _GAMMAS[0] * dot(lam0, f_t)
    grads = (field_bar, t0_bar, h_bar, _tree(jnp.add, y0_bar, y0_W), lam0)
    # A rejected step gets a zero cotangent (diffrax discards it with a select; `Rodas4.step`
    # zeroes non-finite stages), and its derivative is zero, not the NaN that the arithmetic
    # above gives when its stages are not finite, or finite but far outside the physical range
    # (0 x inf in the second-order products)
    grads = _tree(lambda g: jnp.where(used, g, 0.0), grads)
    return _keep_perturbed(grads, perturbed)


class Rodas4(diffrax.AbstractAdaptiveSolver):
    """Rodas4 (Hairer & Wanner): 6-stage, order-4, L-stable, stiffly accurate Rosenbrock
    method with an embedded order-3 error estimate; `linear_solve` is `StructuredSolve()` for
    models with a `structure` (DFN) or `DenseSolve()`. See the module docstring.

    The term's vector field is a `CellField` (the stages call it with args None).
    `reverse_rule` (default True): reverse mode goes through the stages by their own rule
    (`_stages_bwd`), faster than JAX's derivative of them, but a `jax.custom_vjp` has no forward
    mode: `jaxcell.simulate` sets it False for any adjoint other than diffrax's
    `RecursiveCheckpointAdjoint`; set it False yourself for forward mode through diffrax."""

    linear_solve: eqx.Module = DenseSolve()
    reverse_rule: bool = eqx.field(static=True, default=True)

    term_structure = diffrax.AbstractTerm
    interpolation_cls = RodasInterpolation

    def order(self, terms):
        return 4

    def init(self, terms, t0, t1, y0, args):
        return terms.vf(t0, y0, args)

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        field = terms
        while not isinstance(field, diffrax.ODETerm):  # diffrax wraps the term (integration direction)
            field = field.term
        field = field.vector_field
        # A step of zero length happens to cells that have finished while others in a `vmap`
        # go on (diffrax discards its result with a select). Its stages would divide by h = 0,
        # and the NaNs would leak into the other branch's gradient of the select (0 * inf):
        # such a step is computed with a tiny h instead and returns y0 unchanged.
        h = t1 - t0
        moves = h > 0
        h = jnp.where(moves, h, 1e-9)
        f0 = jax.lax.cond(made_jump, lambda: terms.vf(t0, y0, args), lambda: solver_state)
        if self.reverse_rule:
            # the current's closed-over arrays (parameters, step values) as leaves of the field,
            # so that the rule returns their cotangents
            current = eqx.filter_closure_convert(field.current, t0, y0[0])
            field = eqx.tree_at(lambda f: f.current, field, current)
            K = _stages((field, t0, h, y0, f0), self.linear_solve)
        else:
            solve, f_t = self.linear_solve.factor(field, t0, y0, h * _GAMMA)
            K = _run_stages(field, t0, h, y0, f0, solve, f_t)
        # A trial step whose stages are not finite (a stage state outside the physical range,
        # e.g. a negative electrolyte concentration at a very high current) is rejected by an
        # infinite error estimate, diffrax's convention for a failed step, and computed as
        # y1 = y0: NaNs would otherwise reach the gradient through the select that discards
        # the step (0 * NaN), and `_stages_bwd` returns zero for such a step.
        finite = _all_finite(K)
        K = _tree(lambda Kl: jnp.where(finite, Kl, 0.0), K)
        y1 = _tree(lambda y, Kl: jnp.where(moves, y + Kl @ _M_ARR, y), y0, K)
        f1 = _field_value((field, t1, y1)) if self.reverse_rule else terms.vf(t1, y1, args)
        # so is a step that ends where the field is not finite: the next step could not start
        # there, and every later trial would be rejected until max_steps (a stage-wise finite
        # step can end a little past a state's physical range)
        finite = finite & _all_finite(f1)
        d1, d2 = (_tree(lambda Kl, c=c: Kl @ c, K) for c in _D_ARR)
        k_err = _tree(lambda Kl: jnp.where(finite, Kl[..., 5], jnp.inf), K)
        dense_info = {"y0": y0, "y1": y1, "d1": d1, "d2": d2}
        return y1, k_err, dense_info, f1, diffrax.RESULTS.successful

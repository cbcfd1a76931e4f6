"""Physical constants (CODATA 2018, as PyBaMM uses them)."""

F = 96485.33212331001  # Faraday constant [C.mol-1]: N_A e, exact since 2019 (PyBaMM's value)
R_GAS = 8.31446261815324  # molar gas constant N_A k_B [J.mol-1.K-1]

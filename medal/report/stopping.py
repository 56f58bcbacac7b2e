"""When to stop annotating: explicit rules over a run's rounds, and a fitted learning curve.

The rules, evaluated after every round on what the run's own files hold (no ground truth):

``budget``
    The seconds logged so far reach ``report.total_budget_s`` (when set): **stop**.
``plateau``
    The held-out Dice (``training.holdout``) gained less than ``report.min_gain`` in each of the last
    ``report.plateau_rounds`` rounds. Judged twice: on the point estimates (**consider stopping**) and
    on the upper end of each gain's paired bootstrap interval over cases (the gain is *surely* small:
    counts towards **stop**).
``confident pool``
    The mean predictive entropy of the pool's unannotated voxels is below ``report.max_pool_entropy``:
    the model is sure nearly everywhere (**consider stopping**).
``stable predictions``
    How alike the pool's predicted segmentations of two rounds are (this round's and the round before's,
    or with ``report.agreement_window_s`` the round about that many seconds of labels before; mean foreground Dice
    over the pool's cases, :func:`medal.report.metrics.prediction_agreement`; label-free and over the
    whole pool, where the held-out slices are few): stable when at or above ``report.min_agreement`` in
    each of the last ``plateau_rounds`` rounds ("stabilizing predictions", Bloodgood & Vijay-Shanker,
    CoNLL 2009). Always reported. With ``report.min_agreement`` set it is the **gate**: "consider
    stopping" needs stable predictions, and the other rules (plateau, confident pool, learning curve) alone
    only add reasons; "stop" needs stable predictions plus the learning curve's 90% interval below
    ``min_gain``. ``benchmarks/stopping.py`` measured why: the held-out slices are too few to judge a
    plateau, and the confident pool and the learning curve fired rounds early, while the agreement tracked
    the true gain. With ``min_agreement: 0`` every rule counts on its own (the older behaviour).
``learning curve``
    An inverse power law ``dice(s) = a - b * s ** -c`` in logged seconds (Figueroa et al., "Predicting
    sample size required for classification performance", BMC Med Inform Decis Mak 2012), fitted to
    the held-out Dice of every round; the expected gain of one more round of the same budget, with a
    90% interval from refitting on bootstrap resamples of the cases. A gain below ``min_gain`` counts
    towards **consider stopping**; with its interval below ``min_gain`` and a sure plateau, **stop**.

Otherwise: **continue**. Every verdict lists the rules that fired and why. (Active-learning stopping
criteria of this kind: Vlachos 2008, Bloodgood & Vijay-Shanker 2009; learning-curve extrapolation:
Figueroa et al. 2012.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Verdict", "fit_power_law", "power_law", "expected_gain", "plateau", "decide"]


def power_law(s, a: float, b: float, c: float):
    """``a - b * s ** -c``: rises towards ``a`` with diminishing returns."""
    return a - b * np.power(np.maximum(np.asarray(s, dtype=float), 1e-9), -c)


def fit_power_law(seconds, dice) -> tuple[float, float, float] | None:
    """Least-squares fit of :func:`power_law` (``0 <= a <= 1``, ``b >= 0``, ``0.05 <= c <= 3``); None with
    fewer than 3 points or when the fit fails."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(seconds, float), np.asarray(dice, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return None
    scale = float(x.max())
    try:
        (a, b, c), _ = curve_fit(lambda s, a, b, c: power_law(s, a, b, c), x / scale, y,
                                 p0=(min(1.0, y.max() + 0.05), max(y.max() - y.min(), 0.01), 0.5),
                                 bounds=([0.0, 0.0, 0.05], [1.0, 10.0, 3.0]), maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    return float(a), float(b * scale ** c), float(c)  # b back in seconds


def expected_gain(params, seconds_now: float, round_budget_s: float) -> float:
    """Dice one more round of ``round_budget_s`` seconds adds, under the fitted curve."""
    a, b, c = params
    return float(power_law(seconds_now + round_budget_s, a, b, c) - power_law(seconds_now, a, b, c))


def plateau(gains, *, min_gain: float, rounds: int) -> bool:
    """True when each of the last ``rounds`` gains is below ``min_gain``."""
    g = [x for x in gains if x is not None and np.isfinite(x)]
    return len(g) >= rounds and all(x < min_gain for x in g[-rounds:])


@dataclass
class Verdict:
    decision: str  # continue | consider stopping | stop
    reasons: list[str] = field(default_factory=list)
    rules: dict = field(default_factory=dict)  # rule -> {"fired": bool, ...}

    def to_json(self) -> dict:
        return {"decision": self.decision, "reasons": self.reasons, "rules": self.rules}


def decide(rounds: list[dict], *, min_gain: float = 0.01, plateau_rounds: int = 2, max_pool_entropy: float = 0.02,
           total_budget_s: float = 0.0, round_budget_s: float | None = None, min_agreement: float = 0.0,
           n_boot: int = 500, seed: int = 0) -> Verdict:
    """The verdict after the last of ``rounds``.

    ``rounds``: per round, in order, ``{"seconds": cumulative logged seconds when the round's model was
    trained, "dice": held-out Dice or None, "per_case": {case: dice}, "pool_entropy": float or None,
    "budget_s": the round's budget, "agreement": the pool predictions' agreement with the previous
    round's (or an earlier one's), or None, "agreement_span_s": seconds of labels between those two
    predictions (shown in the reasons)}`` (the last two optional). ``min_agreement``: the stable-predictions
    gate; this function's default 0 is ungated (every rule on its own), ``report.min_agreement``'s default is 0.92.
    """
    rules: dict = {}
    reasons: list[str] = []
    stop = consider = False
    secs = [r.get("seconds") for r in rounds]
    spent = max([s for s in secs if s is not None] or [0.0])
    if total_budget_s:
        fired = spent >= total_budget_s
        rules["budget"] = {"fired": fired, "spent_s": spent, "total_budget_s": total_budget_s}
        if fired:
            stop = True
            reasons.append(f"the annotation budget is spent: {spent:.0f} s logged of {total_budget_s:.0f} s")
    valid = [r for r in rounds if r.get("dice") is not None]
    gains, sure = [], []
    rng = np.random.default_rng(seed)
    for prev, cur in zip(valid, valid[1:]):
        gains.append(cur["dice"] - prev["dice"])
        common = sorted(set(prev.get("per_case", {})) & set(cur.get("per_case", {})))
        if len(common) >= 2:
            d = np.array([cur["per_case"][c] - prev["per_case"][c] for c in common])
            boot = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
            sure.append(float(np.quantile(boot, 0.95)))
        else:
            sure.append(float("inf"))
    point = plateau(gains, min_gain=min_gain, rounds=plateau_rounds)
    certain = plateau(sure, min_gain=min_gain, rounds=plateau_rounds)
    rules["plateau"] = {"fired": point, "sure": certain, "gains": gains, "gain_upper_90": sure,
                        "min_gain": min_gain, "rounds": plateau_rounds}
    signals = []  # the label-based rules that fired (on their own: "consider stopping" only without the gate)
    if point:
        signals.append("plateau")
        reasons.append(f"held-out Dice gained less than {min_gain} in each of the last {plateau_rounds} rounds "
                       f"({', '.join(f'{g:+.3f}' for g in gains[-plateau_rounds:])})"
                       + (" and surely so (upper 90% bound below it)" if certain else ""))
    ent = rounds[-1].get("pool_entropy") if rounds else None
    if ent is not None:
        fired = ent < max_pool_entropy
        rules["confident_pool"] = {"fired": fired, "pool_entropy": ent, "max_pool_entropy": max_pool_entropy}
        if fired:
            signals.append("confident_pool")
            reasons.append(f"the model is confident on the unannotated pool (mean entropy {ent:.4f} < {max_pool_entropy})")
    agreements = [r.get("agreement") for r in rounds if r.get("agreement") is not None]
    span = next((r.get("agreement_span_s") for r in reversed(rounds) if r.get("agreement") is not None), None)
    versus = f"the predictions {span:.0f} s of labels before" if span else "the round before"
    gate = bool(min_agreement)
    stable = False
    if agreements:
        last = agreements[-plateau_rounds:]
        stable = gate and len(last) >= plateau_rounds and all(a >= min_agreement for a in last)
        rules["stable_predictions"] = {"fired": stable, "agreements": agreements, "min_agreement": min_agreement or None,
                                       "rounds": plateau_rounds, "gate": gate}
        if stable:
            consider = True
            reasons.append(f"the pool's predictions changed little in each of the last {plateau_rounds} rounds "
                           f"(agreement with {versus} {', '.join(f'{a:.3f}' for a in last)} >= {min_agreement})")
    curve: dict = {"fired": False}
    budget = round_budget_s or (rounds[-1].get("budget_s") if rounds else None)
    params = fit_power_law([r["seconds"] for r in valid], [r["dice"] for r in valid]) if len(valid) >= 3 else None
    if params is not None and budget:
        gain = expected_gain(params, valid[-1]["seconds"], budget)
        boot_gains = []
        cases = sorted(set.intersection(*[set(r.get("per_case", {})) for r in valid])) if valid else []
        for _ in range(200 if len(cases) >= 2 else 0):
            pick = rng.choice(cases, size=len(cases))
            ys = [float(np.mean([r["per_case"][c] for c in pick])) for r in valid]
            p = fit_power_law([r["seconds"] for r in valid], ys)
            if p is not None:
                boot_gains.append(expected_gain(p, valid[-1]["seconds"], budget))
        lo, hi = (np.quantile(boot_gains, [0.05, 0.95]).tolist() if len(boot_gains) >= 20 else (None, None))
        curve = {"fired": gain < min_gain, "params": {"a": params[0], "b": params[1], "c": params[2]},
                 "expected_gain": gain, "interval_90": [lo, hi], "round_budget_s": budget}
        if gain < min_gain:
            signals.append("learning_curve")
            reasons.append(f"the fitted learning curve expects {gain:+.4f} Dice from one more round of {budget:.0f} s"
                           + (f" (90% interval {lo:+.4f} to {hi:+.4f})" if lo is not None else ""))
            # the curve's interval must be below min_gain too, plus a sure held-out plateau (no gate) or stable
            # pool predictions (gate): the held-out slices alone are too few to be sure
            if hi is not None and hi < min_gain and (stable if gate else certain):
                stop = True
    rules["learning_curve"] = curve
    if signals and not gate:
        consider = True
    decision = "stop" if stop else "consider stopping" if consider else "continue"
    if decision == "continue":
        if gate:
            shown = (", ".join(f"{a:.3f}" for a in agreements[-plateau_rounds:]) if agreements else "not measured yet")
            reasons.append(("but " if signals else "") + f"the pool's predictions still change (agreement with "
                           f"{versus}: {shown}; stable needs >= {min_agreement} in each of the last "
                           f"{plateau_rounds} rounds)")
        elif not valid:
            reasons.append("no held-out Dice yet (training.holdout = 0, or no held-out slice annotated)")
        elif len(valid) < 2:
            reasons.append("too few rounds to see a trend")
        else:
            reasons.append(f"held-out Dice is still rising (last gain {gains[-1]:+.3f})")
    return Verdict(decision, reasons, rules)

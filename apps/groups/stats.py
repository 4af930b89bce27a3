"""Statistics for comparing group members. Pure functions: plain numbers in, plain
numbers out, no ORM. Distributions come from scipy; every statistic is computed here
and checked against scipy/scikit-learn on known data in tests/groups/test_stats.py."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy import stats as sps

ALPHA = 0.05
POWER = 0.8
DEFAULT_MDE = 0.02  # absolute, for rate metrics (accuracy 0.90 -> 0.92)
DEFAULT_MDE_RELATIVE = 0.05  # continuous metrics (MAE, RMSE): 5 % of the baseline
BOOTSTRAP_SEED = 20261127
BOOTSTRAP_ROUNDS = 1000

# Latency histogram: bucket k holds latencies in [BOUNDS[k-1], BOUNDS[k]) with
# BOUNDS[-1] = 0 and the last bucket open-ended. Log-spaced by 2**(1/8) (~9 % wide)
# from 0.05 ms to ~2 min, so a percentile is known to within one bucket.
LATENCY_RATIO = 2 ** (1 / 8)
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(
    0.05 * LATENCY_RATIO**i for i in range(0, 170)
)
HIST_SIZE = len(LATENCY_BOUNDS_MS) + 1

# Metrics where smaller is better.
LOWER_IS_BETTER = {"error_rate", "mae", "rmse"}
RATE_METRICS = {"accuracy", "precision", "recall", "error_rate"}
METRICS = ("accuracy", "precision", "recall", "f1", "auc", "error_rate", "mae", "rmse")


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


EMPTY = Estimate(None, None, None, 0)


def _z(q: float) -> float:
    return float(sps.norm.ppf(q))


# --- rates ------------------------------------------------------------------


def wilson_interval(successes: int, n: int, *, alpha: float = ALPHA) -> Estimate:
    """Proportion with its Wilson score interval."""
    if n <= 0:
        return EMPTY
    z = _z(1 - alpha / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


# --- latency histogram ----------------------------------------------------------


def latency_bucket(latency_ms: float) -> int:
    """The histogram bucket of one latency (same rule as SQL width_bucket)."""
    lo, hi = 0, len(LATENCY_BOUNDS_MS)
    while lo < hi:  # number of bounds <= latency
        mid = (lo + hi) // 2
        if LATENCY_BOUNDS_MS[mid] <= latency_ms:
            lo = mid + 1
        else:
            hi = mid
    return lo


def hist_add(total: list[int], other: Sequence[int]) -> list[int]:
    """Element-wise sum of two histograms (shorter ones are padded)."""
    size = max(len(total), len(other), HIST_SIZE)
    out = list(total) + [0] * (size - len(total))
    for i, count in enumerate(other):
        out[i] += int(count)
    return out


def percentile_from_hist(hist: Sequence[int], q: float) -> float | None:
    """The q-th percentile (0-100) from a latency histogram, interpolated
    geometrically inside its bucket; None for an empty histogram."""
    total = sum(hist)
    if total <= 0:
        return None
    rank = q / 100 * total
    seen = 0.0
    for k, count in enumerate(hist):
        if count <= 0:
            continue
        if seen + count >= rank:
            lower = LATENCY_BOUNDS_MS[k - 1] if k > 0 else 0.0
            upper = (
                LATENCY_BOUNDS_MS[k]
                if k < len(LATENCY_BOUNDS_MS)
                else LATENCY_BOUNDS_MS[-1] * LATENCY_RATIO
            )
            fraction = max(0.0, min(1.0, (rank - seen) / count))
            if lower <= 0:
                return upper * fraction
            return float(lower * (upper / lower) ** fraction)
        seen += count
    return LATENCY_BOUNDS_MS[-1]


# --- classification ---------------------------------------------------------


def _positive(labels: Sequence[Any]) -> Any:
    """The positive class: 1 / "1" / True when present, else the largest label."""
    values = {str(v) for v in labels}
    for candidate in ("1", "True", "true"):
        if candidate in values:
            return candidate
    return max(values) if values else "1"


def accuracy(y_true: Sequence[Any], y_pred: Sequence[Any]) -> Estimate:
    correct = sum(str(t) == str(p) for t, p in zip(y_true, y_pred, strict=True))
    return wilson_interval(correct, len(y_true))


def _confusion(
    y_true: Sequence[Any], y_pred: Sequence[Any], positive: Any
) -> tuple[int, int, int]:
    pos = str(positive)
    tp = fp = fn = 0
    for t, p in zip(y_true, y_pred, strict=True):
        t_pos, p_pos = str(t) == pos, str(p) == pos
        tp += t_pos and p_pos
        fp += p_pos and not t_pos
        fn += t_pos and not p_pos
    return tp, fp, fn


def precision(
    y_true: Sequence[Any], y_pred: Sequence[Any], positive: Any = None
) -> Estimate:
    positive = _positive(y_true) if positive is None else positive
    tp, fp, _ = _confusion(y_true, y_pred, positive)
    return wilson_interval(tp, tp + fp)


def recall(
    y_true: Sequence[Any], y_pred: Sequence[Any], positive: Any = None
) -> Estimate:
    positive = _positive(y_true) if positive is None else positive
    tp, _, fn = _confusion(y_true, y_pred, positive)
    return wilson_interval(tp, tp + fn)


def _f1_value(y_true: Sequence[Any], y_pred: Sequence[Any], positive: Any) -> float:
    tp, fp, fn = _confusion(y_true, y_pred, positive)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def bootstrap_interval(
    n: int,
    statistic: Callable[[list[int]], float | None],
    *,
    alpha: float = ALPHA,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap over index resamples (fixed seed: same data, same CI)."""
    if n <= 1:
        return None, None
    rng = random.Random(seed)
    values = []
    for _ in range(rounds):
        sample = [rng.randrange(n) for _ in range(n)]
        value = statistic(sample)
        if value is not None and not math.isnan(value):
            values.append(value)
    if not values:
        return None, None
    values.sort()
    lo = values[math.floor(alpha / 2 * (len(values) - 1))]
    hi = values[math.ceil((1 - alpha / 2) * (len(values) - 1))]
    return lo, hi


def f1(y_true: Sequence[Any], y_pred: Sequence[Any], positive: Any = None) -> Estimate:
    """F1 of the positive class with a bootstrap CI."""
    n = len(y_true)
    if n == 0:
        return EMPTY
    positive = _positive(y_true) if positive is None else positive
    value = _f1_value(y_true, y_pred, positive)
    low, high = bootstrap_interval(
        n,
        lambda idx: _f1_value(
            [y_true[i] for i in idx], [y_pred[i] for i in idx], positive
        ),
    )
    return Estimate(value, low, high, n)


def _ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (1-based), ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def auc_value(y_true: Sequence[Any], scores: Sequence[float], positive: Any) -> float:
    pos = str(positive)
    is_pos = [str(t) == pos for t in y_true]
    n1 = sum(is_pos)
    n0 = len(is_pos) - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = _ranks([float(s) for s in scores])
    u = sum(r for r, p in zip(ranks, is_pos, strict=True) if p) - n1 * (n1 + 1) / 2
    return u / (n1 * n0)


def auc(
    y_true: Sequence[Any],
    scores: Sequence[float],
    positive: Any = None,
    *,
    alpha: float = ALPHA,
) -> Estimate:
    """ROC AUC as the Mann-Whitney U statistic, Hanley-McNeil interval."""
    positive = _positive(y_true) if positive is None else positive
    value = auc_value(y_true, scores, positive)
    if math.isnan(value):
        return Estimate(None, None, None, len(y_true))
    n1 = sum(str(t) == str(positive) for t in y_true)
    n0 = len(y_true) - n1
    q1 = value / (2 - value)
    q2 = 2 * value * value / (1 + value)
    var = (
        value * (1 - value) + (n1 - 1) * (q1 - value**2) + (n0 - 1) * (q2 - value**2)
    ) / (n1 * n0)
    half = _z(1 - alpha / 2) * math.sqrt(max(var, 0.0))
    return Estimate(value, max(0.0, value - half), min(1.0, value + half), len(y_true))


# --- regression ---------------------------------------------------------------


def mae_from_sums(
    n: int, abs_sum: float, sq_sum: float, *, alpha: float = ALPHA
) -> Estimate:
    """MAE with a t interval, from n, sum |e| and sum e^2 (var |e| = E e^2 - MAE^2)."""
    if n <= 0:
        return EMPTY
    mean = abs_sum / n
    if n == 1:
        return Estimate(mean, None, None, 1)
    var = max(0.0, (sq_sum - n * mean * mean) / (n - 1))
    half = float(sps.t.ppf(1 - alpha / 2, n - 1)) * math.sqrt(var / n)
    return Estimate(mean, max(0.0, mean - half), mean + half, n)


def mae(y_true: Sequence[float], y_pred: Sequence[float]) -> Estimate:
    errors = [abs(float(p) - float(t)) for t, p in zip(y_true, y_pred, strict=True)]
    return mae_from_sums(len(errors), sum(errors), sum(e * e for e in errors))


def rmse(y_true: Sequence[float], y_pred: Sequence[float]) -> Estimate:
    """RMSE with a bootstrap CI."""
    sq = [(float(p) - float(t)) ** 2 for t, p in zip(y_true, y_pred, strict=True)]
    n = len(sq)
    if n == 0:
        return EMPTY
    low, high = bootstrap_interval(
        n, lambda idx: math.sqrt(sum(sq[i] for i in idx) / len(idx))
    )
    return Estimate(math.sqrt(sum(sq) / n), low, high, n)


# --- tests ------------------------------------------------------------------


@dataclass(frozen=True)
class HypothesisResult:
    statistic: float | None
    p_value: float | None
    difference: float | None  # b - a
    effect_size: float | None  # Cohen's h (rates) or d (means)
    method: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def two_proportion_ztest(s_a: int, n_a: int, s_b: int, n_b: int) -> HypothesisResult:
    """Pooled two-sided z-test of p_b - p_a; effect size is Cohen's h."""
    if n_a <= 0 or n_b <= 0:
        return HypothesisResult(None, None, None, None, "two_proportion_z")
    p_a, p_b = s_a / n_a, s_b / n_b
    pooled = (s_a + s_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    h = 2 * math.asin(math.sqrt(p_b)) - 2 * math.asin(math.sqrt(p_a))
    if se == 0:
        return HypothesisResult(0.0, 1.0, p_b - p_a, h, "two_proportion_z")
    z = (p_b - p_a) / se
    p = 2 * float(sps.norm.sf(abs(z)))
    return HypothesisResult(z, p, p_b - p_a, h, "two_proportion_z")


def welch_ttest(
    mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int
) -> HypothesisResult:
    """Welch's two-sided t-test of mean_b - mean_a from summary statistics (sample
    variances); effect size is Cohen's d with the pooled SD."""
    if n_a < 2 or n_b < 2:
        return HypothesisResult(None, None, None, None, "welch_t")
    se2 = var_a / n_a + var_b / n_b
    diff = mean_b - mean_a
    pooled_sd = math.sqrt(((n_a - 1) * var_a + (n_b - 1) * var_b) / (n_a + n_b - 2))
    d = diff / pooled_sd if pooled_sd > 0 else 0.0
    if se2 <= 0:
        return HypothesisResult(0.0, 1.0, diff, d, "welch_t")
    t = diff / math.sqrt(se2)
    df = se2**2 / ((var_a / n_a) ** 2 / (n_a - 1) + (var_b / n_b) ** 2 / (n_b - 1))
    p = 2 * float(sps.t.sf(abs(t), df))
    return HypothesisResult(t, p, diff, d, "welch_t")


def welch_from_values(a: Sequence[float], b: Sequence[float]) -> HypothesisResult:
    def moments(x: Sequence[float]) -> tuple[float, float]:
        m = sum(x) / len(x)
        return m, sum((v - m) ** 2 for v in x) / (len(x) - 1)

    if len(a) < 2 or len(b) < 2:
        return HypothesisResult(None, None, None, None, "welch_t")
    (ma, va), (mb, vb) = moments(a), moments(b)
    return welch_ttest(ma, va, len(a), mb, vb, len(b))


def bootstrap_difference_test(
    a_n: int,
    b_n: int,
    statistic_a: Callable[[list[int]], float | None],
    statistic_b: Callable[[list[int]], float | None],
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = BOOTSTRAP_SEED,
) -> HypothesisResult:
    """Two-sided bootstrap p-value of stat_b - stat_a (fixed seed)."""
    if a_n < 2 or b_n < 2:
        return HypothesisResult(None, None, None, None, "bootstrap")
    full_a = statistic_a(list(range(a_n)))
    full_b = statistic_b(list(range(b_n)))
    if full_a is None or full_b is None:
        return HypothesisResult(None, None, None, None, "bootstrap")
    rng = random.Random(seed)
    diffs = []
    for _ in range(rounds):
        sa = statistic_a([rng.randrange(a_n) for _ in range(a_n)])
        sb = statistic_b([rng.randrange(b_n) for _ in range(b_n)])
        if sa is None or sb is None or math.isnan(sa) or math.isnan(sb):
            continue
        diffs.append(sb - sa)
    if not diffs:
        return HypothesisResult(None, None, full_b - full_a, None, "bootstrap")
    below = sum(d <= 0 for d in diffs) / len(diffs)
    above = sum(d >= 0 for d in diffs) / len(diffs)
    p = min(1.0, 2 * min(below, above))
    sd = math.sqrt(sum((d - sum(diffs) / len(diffs)) ** 2 for d in diffs) / len(diffs))
    effect = (full_b - full_a) / sd if sd > 0 else 0.0
    return HypothesisResult(None, p, full_b - full_a, effect, "bootstrap")


# --- sample size and verdict ---------------------------------------------------


def sample_size_proportions(
    baseline: float, mde: float, *, alpha: float = ALPHA, power: float = POWER
) -> int:
    """Per-arm n to detect an absolute change `mde` from `baseline` (two-sided)."""
    p1 = min(max(baseline, 0.0), 1.0)
    p2 = p1 + mde if p1 + mde <= 1 else p1 - mde
    p2 = min(max(p2, 0.0), 1.0)
    delta = abs(p2 - p1)
    if delta <= 0:
        return 0
    za, zb = _z(1 - alpha / 2), _z(power)
    pbar = (p1 + p2) / 2
    n = (
        za * math.sqrt(2 * pbar * (1 - pbar))
        + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / delta**2
    return math.ceil(n)


def sample_size_means(
    sd: float, mde: float, *, alpha: float = ALPHA, power: float = POWER
) -> int:
    """Per-arm n to detect a difference of means `mde` with common SD `sd`."""
    if mde <= 0:
        return 0
    za, zb = _z(1 - alpha / 2), _z(power)
    return math.ceil(2 * ((za + zb) * sd / mde) ** 2)


@dataclass
class Verdict:
    verdict: (
        str  # needs_more_data | challenger_better | champion_better | no_difference
    )
    metric: str
    message: str
    required_per_arm: int | None
    needed_more: int
    champion: Estimate | None = None
    challenger: Estimate | None = None
    test: HypothesisResult | None = None
    mde: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "metric": self.metric,
            "message": self.message,
            "required_per_arm": self.required_per_arm,
            "needed_more": self.needed_more,
            "mde": self.mde,
            "champion": self.champion.as_dict() if self.champion else None,
            "challenger": self.challenger.as_dict() if self.challenger else None,
            "test": self.test.as_dict() if self.test else None,
        }


def decide(
    *,
    metric: str,
    champion: Estimate,
    challenger: Estimate,
    test: HypothesisResult,
    required_per_arm: int | None,
    alpha: float = ALPHA,
    mde: float | None = None,
    unit: str = "labelled requests",
) -> Verdict:
    """No verdict before both arms reach the required sample size; then the test."""
    if required_per_arm is None or champion.value is None or challenger.value is None:
        missing = [
            name
            for name, est in (("champion", champion), ("challenger", challenger))
            if est.value is None
        ]
        return Verdict(
            "needs_more_data",
            metric,
            f"No {metric} yet for the {' and '.join(missing) or 'arms'}: "
            f"send {unit} to both.",
            required_per_arm,
            0,
            champion,
            challenger,
            test,
            mde,
        )
    needed = max(0, required_per_arm - champion.n) + max(
        0, required_per_arm - challenger.n
    )
    if needed > 0:
        return Verdict(
            "needs_more_data",
            metric,
            f"Needs {needed} more {unit} ({required_per_arm} per arm to detect a "
            f"change of {mde:g} in {metric}).",
            required_per_arm,
            needed,
            champion,
            challenger,
            test,
            mde,
        )
    if test.p_value is None or test.p_value >= alpha or not test.difference:
        return Verdict(
            "no_difference",
            metric,
            f"No significant difference in {metric} "
            f"(p = {test.p_value if test.p_value is not None else float('nan'):.3g}).",
            required_per_arm,
            0,
            champion,
            challenger,
            test,
            mde,
        )
    better = (test.difference < 0) == (metric in LOWER_IS_BETTER)
    who = "challenger_better" if better else "champion_better"
    word = "challenger" if better else "champion"
    return Verdict(
        who,
        metric,
        f"The {word} is better on {metric} (p = {test.p_value:.3g}).",
        required_per_arm,
        0,
        champion,
        challenger,
        test,
        mde,
    )

"""Two checks on every training run: a simple baseline, and a shift check between periods.

- The baseline is a regularised logistic regression on the same features and split as the
  model: when it scores as well as boosting, the extra machinery does not pay.
- The shift check (adversarial validation) trains a classifier to tell the training cohort
  from the test cohort. An AUC near 0.5 means the periods look alike; the features it leans
  on are the ones whose meaning or mix changed over time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from leadscore.data.features import FeatureBuilder
from leadscore.modeling.metrics import classification_metrics

#: Inverse regularisation strengths tried; the best on validation is kept.
C_GRID = (0.01, 0.1, 1.0)
#: Training rows the baseline fits on at most (a seeded sample): a linear model's estimate
#: is stable long before a million snapshot rows, and the fit stays within seconds.
BASELINE_ROWS = 100_000
#: Rows per cohort the shift check looks at (a sample keeps it to seconds).
SHIFT_ROWS = 50_000
#: Adversarial AUC above which the periods are said to differ.
SHIFT_AUC_WARN = 0.6


def _signed_log(x: np.ndarray) -> np.ndarray:
    # Counts and durations are heavy-tailed; a signed log keeps a linear model sane.
    return np.sign(x) * np.log1p(np.abs(x))


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype("object").where(frame.notna(), "__missing__")


def design(builder: FeatureBuilder) -> ColumnTransformer:
    """A linear model's design on the model's feature matrix: numerics imputed (with a
    missing indicator), signed-log and standardised; categoricals one-hot (rare levels
    pooled). Picklable: it travels inside a packaged model."""
    cats = builder.categorical_features
    nums = [c for c in builder.feature_names_ if c not in cats]
    numeric = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        FunctionTransformer(_signed_log, feature_names_out="one-to-one"),
        StandardScaler(),
    )
    categorical = make_pipeline(
        FunctionTransformer(_as_text, feature_names_out="one-to-one"),
        OneHotEncoder(handle_unknown="ignore", min_frequency=20),
    )
    return ColumnTransformer(
        [("num", numeric, nums), ("cat", categorical, cats)], sparse_threshold=0
    )


def design_features(transformer: ColumnTransformer, builder: FeatureBuilder) -> np.ndarray:
    """For each column of a fitted design, the index of the model feature it comes from."""
    names = list(builder.feature_names_)
    cats = sorted(builder.categorical_features, key=len, reverse=True)
    out = []
    for name in transformer.get_feature_names_out():
        kind, rest = str(name).split("__", 1)
        if kind == "num":
            rest = rest.removeprefix("missingindicator_")
            out.append(names.index(rest))
        else:
            out.append(names.index(next(c for c in cats if rest.startswith(f"{c}_"))))
    return np.asarray(out, dtype=np.int64)


@dataclass
class Baseline:
    """The fitted logistic regression and its test metrics."""

    c: float
    metrics: dict[str, float]
    validation_auc: dict[float, float] = field(default_factory=dict)
    test_probability: np.ndarray | None = field(default=None, repr=False)


def fit_baseline(
    builder: FeatureBuilder,
    fit_rows: pd.DataFrame,
    y_fit: np.ndarray,
    stopping: np.ndarray,
    test_rows: pd.DataFrame,
    y_test: np.ndarray,
) -> Baseline:
    """L2 logistic regression on the model's own feature matrix.

    C is chosen by ROC-AUC on the `stopping` rows (a boolean mask over `fit_rows`) with the
    regression fitted on the others; then it is refitted with that C on every fitting row,
    so it learns from the newest period as the model does. The design (imputation, scaling,
    one-hot) is fitted once, and each C starts from the previous solution.
    """
    y_fit = np.asarray(y_fit, dtype=float)
    stopping = np.asarray(stopping, dtype=bool)
    rng = np.random.default_rng(0)
    if len(fit_rows) > BASELINE_ROWS:
        keep = np.sort(rng.choice(len(fit_rows), BASELINE_ROWS, replace=False))
        fit_rows, y_fit, stopping = fit_rows.iloc[keep], y_fit[keep], stopping[keep]
    x = builder.transform(fit_rows)
    transformer = design(builder).fit(x[~stopping])
    z = transformer.transform(x)
    aucs: dict[float, float] = {}
    lr = LogisticRegression(max_iter=300, warm_start=True)
    # One BLAS thread: the solver's small matrix products ran 4-15x slower on two
    # OpenBLAS threads than on one on a two-core machine (docs/benchmarks.md).
    with threadpool_limits(limits=1, user_api="blas"):
        for c in C_GRID:
            lr.set_params(C=c).fit(z[~stopping], y_fit[~stopping])
            aucs[c] = float(roc_auc_score(y_fit[stopping], lr.predict_proba(z[stopping])[:, 1]))
        best = max(aucs, key=aucs.get)
        lr.set_params(C=best).fit(z, y_fit)  # every fitting row, from the last solution
        p = lr.predict_proba(transformer.transform(builder.transform(test_rows)))[:, 1]
    return Baseline(best, classification_metrics(y_test, p, p), aucs, p)


@dataclass
class Shift:
    """How well a classifier tells the training cohort from the test cohort, and by what."""

    auc: float
    importance: pd.Series  # share of gain per feature, largest first
    rows: int

    @property
    def shifted(self) -> bool:
        return self.auc >= SHIFT_AUC_WARN

    def top(self, n: int = 5, min_share: float = 0.05) -> list[tuple[str, float]]:
        head = self.importance[self.importance >= min_share].head(n)
        return [(str(k), float(v)) for k, v in head.items()]


def shift_check(
    builder: FeatureBuilder,
    train_rows: pd.DataFrame,
    test_rows: pd.DataFrame,
    seed: int = 0,
    num_threads: int = 1,
) -> Shift:
    """Adversarial validation: AUC on held-out halves, importance from the fitted trees.

    The matrix is exactly what the model sees, so a named feature is one whose mix or
    meaning changed between the periods the model learned from and is judged on.
    """
    rng = np.random.default_rng(seed)

    def sample(rows: pd.DataFrame) -> pd.DataFrame:
        if len(rows) <= SHIFT_ROWS:
            return rows
        return rows.iloc[np.sort(rng.choice(len(rows), SHIFT_ROWS, replace=False))]

    a, b = sample(train_rows), sample(test_rows)
    x = pd.concat([builder.transform(a), builder.transform(b)], ignore_index=True)
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    half = rng.random(len(y)) < 0.5
    clf = lgb.LGBMClassifier(
        n_estimators=200,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=50,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        random_state=seed,
        n_jobs=num_threads,
        verbose=-1,
    )
    clf.fit(x[half], y[half])
    auc = float(roc_auc_score(y[~half], clf.predict_proba(x[~half])[:, 1]))
    gain = pd.Series(
        clf.booster_.feature_importance(importance_type="gain"), index=x.columns, dtype=float
    )
    share = (gain / gain.sum()) if gain.sum() > 0 else gain
    return Shift(auc, share.sort_values(ascending=False), len(y))

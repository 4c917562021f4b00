"""InterFaceGAN's boundary: a linear SVM between the W codes of faces with and without an attribute.

InterFaceGAN (Shen et al. 2020, ``train_boundary`` in ``utils/manipulator.py``) labels latent
codes, fits ``sklearn.svm.SVC(kernel="linear")`` and keeps the unit normal of the separating
hyperplane, ``coef_ / |coef_|`` as a (1, 512) float32 array, pointing towards the positive side;
moving a code along it adds the attribute. It scores generated faces with a classifier and keeps
the extremes; here the user's two folders are the labels, and C is chosen by cross-validation
(InterFaceGAN keeps sklearn's default C = 1 and reports accuracy on a held-out 30 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from henshin.errors import BadInputError

MIN_PER_SIDE = 10  # fewer examples than this on a side cannot be cross-validated meaningfully
C_GRID = (
    0.0001,
    0.001,
    0.01,
    0.1,
    1.0,
)  # up to InterFaceGAN's C = 1; small C: wide margins for few, noisy examples
MAX_FOLDS = 5


@dataclass(frozen=True)
class Boundary:
    """A fitted direction: the unit normal (1, D) float32, the chosen C and the cross-validated accuracy."""

    normal: np.ndarray
    c: float
    accuracy: float
    folds: int
    positive: int
    negative: int

    def summary(self) -> dict[str, float | int]:
        """What the JSON beside the direction records."""
        return {
            "positive": self.positive,
            "negative": self.negative,
            "dim": int(self.normal.shape[1]),
            "c": self.c,
            "cv_accuracy": round(self.accuracy, 4),
            "cv_folds": self.folds,
        }


def mean_codes(w_plus: np.ndarray, rows: range | None = None) -> np.ndarray:
    """W codes (N, D) from W+ (N, L, D): the mean of ``rows`` (None: all); (N, D) codes pass through."""
    w = np.asarray(w_plus, np.float64)
    if w.ndim == 2:
        return w
    if w.ndim != 3:
        raise BadInputError(f"latent codes must be (N, 512) or (N, L, 512), got {w.shape}.")
    return w[:, list(rows) if rows is not None else slice(None)].mean(axis=1)


def fit_boundary(positive: np.ndarray, negative: np.ndarray, seed: int = 0) -> Boundary:
    """The SVM normal separating ``positive`` (N, D) from ``negative`` (M, D) codes, C by stratified k-fold CV."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    check_counts(len(positive), len(negative))
    x = np.concatenate([positive, negative]).astype(np.float64)
    y = np.concatenate([np.ones(len(positive), int), np.zeros(len(negative), int)])
    folds = min(MAX_FOLDS, len(positive), len(negative))
    search = GridSearchCV(
        SVC(kernel="linear"),
        {"C": list(C_GRID)},
        scoring="accuracy",
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
    )
    search.fit(x, y)
    coef = search.best_estimator_.coef_.reshape(
        1, -1
    )  # classes_ are [0, 1]: coef_ points to the positives
    norm = np.linalg.norm(coef)
    if not np.isfinite(norm) or norm == 0:
        raise BadInputError(
            "the positive and negative codes could not be separated at all (the SVM's normal is "
            "zero); give examples that differ in the attribute."
        )
    return Boundary(
        (coef / norm).astype(np.float32),
        float(search.best_params_["C"]),
        float(search.best_score_),
        folds,
        len(positive),
        len(negative),
    )


def check_counts(positive: int, negative: int) -> None:
    """Refuse fewer than ``MIN_PER_SIDE`` examples on a side, in one sentence."""
    for side, n in (("positive", positive), ("negative", negative)):
        if n < MIN_PER_SIDE:
            raise BadInputError(
                f"the {side} examples hold {n} face{'s' if n != 1 else ''}, but fitting a direction "
                f"needs at least {MIN_PER_SIDE} on each side; add more pictures."
            )

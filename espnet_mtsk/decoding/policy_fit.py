"""Fitting the per-utterance scale policy (``policy``) on a noisy dev set
decoded at every scale (``avsr_inference --scales ...``); the command line
is ``espnet_mtsk.bin.fit_policy``.

The condition posterior is a logistic regression (scikit-learn: standardised
features, PCA, multinomial logistic regression, folded into one affine map)
on the audio encoder's pooled states, of the set and of extra data dirs
(more voices at the same conditions, not decoded: a dev set has few
speakers); its size and regularisation are those of the best held-out
log-likelihood. The WER table per condition and scale is the set's. The
operating points are simulated on the set's own decodings with posteriors
held out by speaker (each speaker's from a regression that did not
see it), so the recorded WER and tokens/s are not flattered by the fit; the
policy written is fitted on all.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.decoding.avsr2text import AVSR2Text
from espnet_mtsk.decoding.policy import DECODING_FILE, AdaptivePolicy, OperatingPoint, pareto, simulate
from espnet_mtsk.reporting.scoring import count_errors, normalise
from espnet_mtsk.tasks.avsr import AVSRTask


@dataclass
class Decodings:
    """A set's decodings at every scale: per utterance and scale (U, S) the
    word errors, the LLM's tokens and the transcript scores; per utterance
    (U,) the speech seconds and reference words."""

    utts: List[str]
    scales: List[str]
    errors: np.ndarray
    tokens: np.ndarray
    scores: np.ndarray
    seconds: np.ndarray
    words: np.ndarray


def read_decodings(decode_dir: Path, data_dir: Path, scales: Sequence[str]) -> Decodings:
    """``decode_dir``/<scale>/1best_recog of every utterance of ``data_dir``'s
    text; a ValueError naming the file that lacks one."""
    refs = {k: normalise(v) for k, v in read_2columns_text(data_dir / "text").items()}
    utts = sorted(refs)
    errors, tokens, scores = (np.zeros((len(utts), len(scales))) for _ in range(3))
    seconds = np.zeros(len(utts))
    for j, scale in enumerate(scales):
        best = decode_dir / scale / "1best_recog"
        files = {name: read_2columns_text(best / name) for name in ("text", "num_tokens", "score", "speech_seconds")}
        for name, table in files.items():
            lacking = [u for u in utts if u not in table]
            if lacking:
                raise ValueError(f"{best / name} lacks {lacking[:5]}: decode {data_dir} at every scale first")
        for i, u in enumerate(utts):
            errors[i, j] = count_errors([refs[u]], [normalise(files["text"][u])]).wrong
            tokens[i, j] = float(files["num_tokens"][u])
            scores[i, j] = float(files["score"][u])
            seconds[i] = float(files["speech_seconds"][u])
    words = np.array([len(refs[u].split()) for u in utts])
    return Decodings(utts, list(scales), errors, tokens, scores, seconds, words)


def decoding_settings(decode_dir: Path) -> dict:
    """The settings the decodings of ``decode_dir`` were made with
    (``DECODING_FILE``, which ``avsr_inference`` writes); a ValueError
    naming the folder without it."""
    path = decode_dir / DECODING_FILE
    if not path.exists():
        raise ValueError(f"{path} not found: decode {decode_dir} with espnet_mtsk.bin.avsr_inference "
                         "(avsr.sh stage 12), which records its settings there")
    return json.loads(path.read_text())


def audio_features(avsr: AVSR2Text, wav_scp: Path, batch_size: int) -> Dict[str, np.ndarray]:
    """Pooled audio encoder states per utterance of ``wav_scp``, as decoding
    computes the policy's features (``AVSR2Text.pooled_audio``)."""
    loader = AVSRTask.build_streaming_iterator(
        [(str(wav_scp), "speech", "sound")],
        dtype="float32",
        batch_size=batch_size,
        preprocess_fn=AVSRTask.build_preprocess_fn(avsr.train_args, False),
        collate_fn=AVSRTask.build_collate_fn(avsr.train_args, False),
        inference=True,
    )
    out = {}
    for keys, batch in loader:
        out.update(zip(keys, avsr.pooled_audio(batch)))
    return out


def fit_posterior(x: np.ndarray, y: np.ndarray, components: int, c: float):
    """A condition classifier and its affine map (weights (C, F), bias (C,))."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    k = min(components, x.shape[0] - 1, x.shape[1])
    # PCA's "auto" solver is a randomised, unseeded SVD on large inputs
    # (more than 500 x 500): every fit would differ.
    clf = make_pipeline(StandardScaler(), PCA(k, svd_solver="full"), LogisticRegression(C=c, max_iter=5000)).fit(x, y)
    scaler, pca, logistic = clf.steps[0][1], clf.steps[1][1], clf.steps[2][1]
    # logits = L (P ((x - mu) / sigma - m)) + b, one affine map of x.
    projection = logistic.coef_ @ pca.components_ / scaler.scale_
    bias = logistic.intercept_ - logistic.coef_ @ pca.components_ @ (scaler.mean_ / scaler.scale_ + pca.mean_)
    if projection.shape[0] == 1:  # two classes: scikit-learn keeps one row
        projection, bias = np.vstack([-projection / 2, projection / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    return clf, projection, bias


def held_out_posteriors(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    classes: List[str],
    extra: Optional[Tuple[np.ndarray, np.ndarray]] = None,
    **fit,
) -> np.ndarray:
    """Posteriors (U, C): each group's from a classifier fitted on the other
    groups and on ``extra`` (features, conditions), which is never held out."""
    extra_x, extra_y = extra if extra is not None else (x[:0], y[:0])
    posterior = np.zeros((len(y), len(classes)))
    # One group (one speaker): two folds of alternate utterances instead.
    folds = groups if len(np.unique(groups)) > 1 else np.arange(len(y)) % 2
    for fold in np.unique(folds):
        test = folds == fold
        clf = fit_posterior(np.concatenate([x[~test], extra_x]), np.concatenate([y[~test], extra_y]), **fit)[0]
        probs = clf.predict_proba(x[test])
        for j, label in enumerate(clf.classes_):
            posterior[test, classes.index(label)] = probs[:, j]
    return posterior


def best_posterior(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    conditions: List[str],
    extra: Tuple[np.ndarray, np.ndarray],
    components: Sequence[int],
    regularisation: Sequence[float],
) -> Tuple[dict, np.ndarray, float]:
    """The classifier's size and regularisation of the best held-out
    log-likelihood: (its settings, its held-out posteriors, the
    log-likelihood)."""
    truth = np.array([conditions.index(c) for c in y])
    trials = []
    for k in components:
        for c in regularisation:
            fit = dict(components=k, c=c)
            posterior = held_out_posteriors(x, y, groups, conditions, extra, **fit)
            trials.append((np.mean(np.log(posterior[np.arange(len(y)), truth] + 1e-12)), fit, posterior))
    likelihood, fit, posterior = max(trials, key=lambda t: t[0])
    return fit, posterior, likelihood


def sweep(policy: AdaptivePolicy, posterior: np.ndarray, decoded: Decodings, count: int) -> List[OperatingPoint]:
    """The Pareto front of the operating points simulated on ``decoded``:
    ``count`` tradeoffs from 0 to past the one at which the cheapest scale
    always wins, each without a cascade and with thresholds at quantiles of
    the audio-only scales' scores."""
    gaps = np.diff(np.unique(policy.tokens_per_sec))
    top = max(2 * (policy.wer.max() - policy.wer.min()) / max(gaps.min() if gaps.size else 1.0, 1e-3), 1e-2)
    tradeoffs = [0.0] + list(np.geomspace(1e-3, top, count - 1))
    audio_only = [j for j, m in enumerate(policy.modalities) if m == ["audio"]]
    quantiles = np.quantile(decoded.scores[:, audio_only], [0.1, 0.25, 0.5]) if audio_only else []
    thresholds = [None] + sorted({round(float(q), 4) for q in quantiles})
    candidates = []
    for tradeoff in tradeoffs:
        for threshold in thresholds:
            point = OperatingPoint(float(tradeoff), threshold, 0.0, 0.0)
            e, t = simulate(policy, posterior, point, decoded.errors, decoded.tokens, decoded.scores)
            candidates.append(OperatingPoint(float(tradeoff), threshold, round(t / decoded.seconds.sum(), 3),
                                             round(100 * e / decoded.words.sum(), 3)))
    return pareto(candidates)


def fit_policy(
    avsr: AVSR2Text,
    data_dir: Path,
    utt2condition: Path,
    decode_dir: Path,
    scales: Optional[Sequence[str]] = None,
    estimator_dirs: Sequence[Path] = (),
    batch_size: int = 16,
    components: Sequence[int] = (8, 16, 32),
    regularisation: Sequence[float] = (0.01, 0.1, 1.0),
    tradeoffs: int = 80,
    set_name: Optional[str] = None,
) -> AdaptivePolicy:
    """The policy of ``avsr``'s model fitted on ``data_dir`` (wav.scp, text,
    utt2spk), its conditions (``utt2condition``) and its decodings at every
    scale (``decode_dir``); see the module's docstring."""
    scales = [avsr.model.scale(s).id for s in (scales or avsr.model.scale_ids)]
    condition = read_2columns_text(utt2condition)
    decoded = read_decodings(decode_dir, data_dir, scales)
    missing = [u for u in decoded.utts if u not in condition]
    if missing:
        raise ValueError(f"{utt2condition} lacks {len(missing)} utterances of {data_dir}: {missing[:5]}")
    speaker = read_2columns_text(data_dir / "utt2spk")

    features = audio_features(avsr, data_dir / "wav.scp", batch_size)
    x = np.stack([features[u] for u in decoded.utts])
    y = np.array([condition[u] for u in decoded.utts])
    extra_x, extra_y = [], []
    for folder in estimator_dirs:
        labels = read_2columns_text(folder / "utt2condition")
        for u, f in sorted(audio_features(avsr, folder / "wav.scp", batch_size).items()):
            extra_x.append(f)
            extra_y.append(labels[u])
    extra = (np.array(extra_x).reshape(len(extra_x), x.shape[1]), np.array(extra_y, dtype=str))
    conditions = sorted(set(y.tolist()))
    if not set(extra_y) <= set(conditions):
        raise ValueError(f"{list(map(str, estimator_dirs))}: conditions {sorted(set(extra_y) - set(conditions))} "
                         f"are not among {data_dir}'s {conditions}")
    wer = np.array([[100 * decoded.errors[y == c, j].sum() / decoded.words[y == c].sum() for j in range(len(scales))]
                    for c in conditions])
    groups = np.array([speaker[u] for u in decoded.utts])
    fit, posterior, likelihood = best_posterior(x, y, groups, conditions, extra, components, regularisation)
    _, weights, bias = fit_posterior(np.concatenate([x, extra[0]]), np.concatenate([y, extra[1]]), **fit)
    policy = AdaptivePolicy(
        conditions=conditions,
        scales=scales,
        modalities=[list(avsr.model.scale(s).modalities) for s in scales],
        weights=weights,
        bias=bias,
        wer=wer,
        tokens_per_sec=decoded.tokens.sum(0) / decoded.seconds.sum(),
        points=[],
        fit_set=set_name or data_dir.name,
        decoding=decoding_settings(decode_dir),
    )
    truth = np.array([conditions.index(c) for c in y])
    logging.info(f"conditions {conditions}: {fit}, held-out accuracy "
                 f"{100 * np.mean(posterior.argmax(1) == truth):.1f}%, log-likelihood {likelihood:.3f}")
    policy.points = sweep(policy, posterior, decoded, tradeoffs)
    return policy

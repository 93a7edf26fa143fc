#!/usr/bin/env python3
"""Fits the per-utterance scale policy (``espnet_mtsk.decoding.policy``) on a noisy dev
set that ``avsr_inference --scales ...`` decoded at every scale.

    python -m espnet_mtsk.bin.fit_policy --asr_train_config exp/x/config.yaml \\
        --asr_model_file exp/x/valid.acc.ave.pth --data_dir dump/raw/dev_noisy \\
        --utt2condition data/dev_noisy/utt2condition \\
        --decode_dir exp/x/decode/dev_noisy --output exp/x/policy.json \
        [--estimator_dirs dump/raw/train_noisy]

The condition posterior is a logistic regression (scikit-learn: standardised
features, PCA, multinomial logistic regression, folded into one affine map)
on the audio encoder's pooled states, of the set and of ``--estimator_dirs``
(more voices at the same conditions, not decoded: a dev set has few
speakers); its size and regularisation are those of the best cross-fitted
log-likelihood. The WER table per condition and scale is the set's. The
operating points are simulated on
the set's own decodings with posteriors cross-fitted across speakers (each
speaker's from a regression that did not see it), so the recorded WER and
tokens/s are not flattered by the fit; the policy written is fitted on all.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.fileio.read_text import read_2columns_text
from espnet2.utils.types import str_or_none

from espnet_mtsk.cli import add_pretrained_arguments
from espnet_mtsk.decoding.avsr2text import AVSR2Text
from espnet_mtsk.decoding.policy import DECODING_FILE, AdaptivePolicy, OperatingPoint, pareto, pooled_states, simulate
from espnet_mtsk.reporting.scoring import count_errors, normalise
from espnet_mtsk.tasks.avsr import AVSRTask


def audio_features(avsr: AVSR2Text, wav_scp: Path, batch_size: int) -> Dict[str, np.ndarray]:
    """Pooled audio encoder states per utterance of ``wav_scp``."""
    loader = AVSRTask.build_streaming_iterator(
        [(str(wav_scp), "speech", "sound")],
        dtype="float32",
        batch_size=batch_size,
        preprocess_fn=AVSRTask.build_preprocess_fn(avsr.train_args, False),
        collate_fn=AVSRTask.build_collate_fn(avsr.train_args, False),
        inference=True,
    )
    out = {}
    with torch.no_grad():
        for keys, batch in loader:
            hs, hlens = avsr.model.encode(batch["speech"], batch["speech_lengths"], modalities=["audio"])["audio"]
            out.update(zip(keys, pooled_states(hs, hlens)))
    return out


def fit_posterior(x: np.ndarray, y: np.ndarray, components: int, c: float):
    """A condition classifier and its affine map (weights (C, F), bias (C,))."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    k = min(components, x.shape[0] - 1, x.shape[1])
    clf = make_pipeline(StandardScaler(), PCA(k), LogisticRegression(C=c, max_iter=5000)).fit(x, y)
    scaler, pca, logistic = clf.steps[0][1], clf.steps[1][1], clf.steps[2][1]
    # logits = L (P ((x - mu) / sigma - m)) + b, one affine map of x.
    projection = logistic.coef_ @ pca.components_ / scaler.scale_
    bias = logistic.intercept_ - logistic.coef_ @ pca.components_ @ (scaler.mean_ / scaler.scale_ + pca.mean_)
    if projection.shape[0] == 1:  # two classes: scikit-learn keeps one row
        projection, bias = np.vstack([-projection / 2, projection / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    return clf, projection, bias


def cross_fitted(
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


def decoding_settings(decode_dir: Path) -> dict:
    """The settings the decodings of ``decode_dir`` were made with
    (``DECODING_FILE``, which ``avsr_inference`` writes); a ValueError
    naming the folder without it."""
    path = decode_dir / DECODING_FILE
    if not path.exists():
        raise ValueError(f"{path} not found: decode {decode_dir} with espnet_mtsk.bin.avsr_inference "
                         "(avsr.sh stage 12), which records its settings there")
    return json.loads(path.read_text())


def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", required=True)
    parser.add_argument("--asr_model_file", required=True)
    add_pretrained_arguments(parser)
    parser.add_argument("--data_dir", type=Path, required=True, help="holds wav.scp, text and utt2spk")
    parser.add_argument("--utt2condition", type=Path, required=True, help="<utt> <condition> lines")
    parser.add_argument("--estimator_dirs", type=Path, nargs="*", default=[],
                        help="more data dirs (wav.scp, utt2condition; other speakers) whose audio "
                        "trains the condition estimate too; they need no decoding")
    parser.add_argument("--decode_dir", type=Path, required=True,
                        help="holds <scale>/1best_recog/{text,num_tokens,score,speech_seconds} for every scale")
    parser.add_argument("--scales", nargs="+", default=None, help="default: every scale of the model")
    parser.add_argument("--output", type=Path, required=True, help="policy.json to write")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--components", type=int, nargs="+", default=[8, 16, 32],
                        help="PCA components of the pooled states tried")
    parser.add_argument("--regularisation", type=float, nargs="+", default=[0.01, 0.1, 1.0],
                        help="the logistic regression's C values tried")
    parser.add_argument("--tradeoffs", type=int, default=80, help="tradeoff values tried")
    parser.add_argument("--set_name", type=str_or_none, default=None)
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")

    avsr = AVSR2Text(args.asr_train_config, args.asr_model_file,
                     pretrained_dirs=dict(args.pretrained_dir),
                     accept_pretrained_changes=args.accept_pretrained_changes)
    scales = [avsr.model.scale(s).id for s in (args.scales or avsr.model.scale_ids)]
    condition = read_2columns_text(args.utt2condition)
    refs = {k: normalise(v) for k, v in read_2columns_text(args.data_dir / "text").items()}
    speaker = read_2columns_text(args.data_dir / "utt2spk")
    utts = sorted(refs)
    missing = [u for u in utts if u not in condition]
    if missing:
        raise ValueError(f"{args.utt2condition} lacks {len(missing)} utterances of {args.data_dir}: {missing[:5]}")

    errors, tokens, scores = (np.zeros((len(utts), len(scales))) for _ in range(3))
    seconds = np.zeros(len(utts))
    for j, scale in enumerate(scales):
        best = args.decode_dir / scale / "1best_recog"
        files = {name: read_2columns_text(best / name) for name in ("text", "num_tokens", "score", "speech_seconds")}
        for name, table in files.items():
            lacking = [u for u in utts if u not in table]
            if lacking:
                raise ValueError(f"{best / name} lacks {lacking[:5]}: decode {args.data_dir} at every scale first")
        for i, u in enumerate(utts):
            errors[i, j] = count_errors([refs[u]], [normalise(files["text"][u])]).wrong
            tokens[i, j] = float(files["num_tokens"][u])
            scores[i, j] = float(files["score"][u])
            seconds[i] = float(files["speech_seconds"][u])

    features = audio_features(avsr, args.data_dir / "wav.scp", args.batch_size)
    x = np.stack([features[u] for u in utts])
    y = np.array([condition[u] for u in utts])
    extra_x, extra_y = [], []
    for folder in args.estimator_dirs:
        labels = read_2columns_text(folder / "utt2condition")
        for u, f in sorted(audio_features(avsr, folder / "wav.scp", args.batch_size).items()):
            extra_x.append(f)
            extra_y.append(labels[u])
    extra = (np.array(extra_x).reshape(len(extra_x), x.shape[1]), np.array(extra_y, dtype=str))
    conditions = sorted(set(y.tolist()))
    if not set(extra_y) <= set(conditions):
        raise ValueError(f"{args.estimator_dirs}: conditions {sorted(set(extra_y) - set(conditions))} "
                         f"are not among {args.data_dir}'s {conditions}")
    words = np.array([len(refs[u].split()) for u in utts])
    wer = np.array([[100 * errors[y == c, j].sum() / words[y == c].sum() for j in range(len(scales))]
                    for c in conditions])
    groups = np.array([speaker[u] for u in utts])
    truth = np.array([conditions.index(c) for c in y])
    # The classifier's size and regularisation: the best cross-fitted log-likelihood.
    trials = []
    for components in args.components:
        for c in args.regularisation:
            fit = dict(components=components, c=c)
            posterior = cross_fitted(x, y, groups, conditions, extra, **fit)
            trials.append((-np.mean(np.log(posterior[np.arange(len(y)), truth] + 1e-12)), fit, posterior))
    loss, fit, posterior = min(trials, key=lambda t: t[0])
    _, weights, bias = fit_posterior(np.concatenate([x, extra[0]]), np.concatenate([y, extra[1]]), **fit)
    policy = AdaptivePolicy(
        conditions=conditions,
        scales=scales,
        modalities=[list(avsr.model.scale(s).modalities) for s in scales],
        weights=weights,
        bias=bias,
        wer=wer,
        tokens_per_sec=tokens.sum(0) / seconds.sum(),
        points=[],
        fit_set=args.set_name or args.data_dir.name,
        decoding=decoding_settings(args.decode_dir),
    )
    accuracy = np.mean(posterior.argmax(1) == truth)
    logging.info(f"conditions {conditions}: {fit}, cross-fitted accuracy {100 * accuracy:.1f}%, "
                 f"log-likelihood {-loss:.3f}")

    # Tradeoffs from 0 to past the one at which the cheapest scale always
    # wins; thresholds at quantiles of the audio-only scales' scores.
    gaps = np.diff(np.unique(policy.tokens_per_sec))
    top = max(2 * (wer.max() - wer.min()) / max(gaps.min() if gaps.size else 1.0, 1e-3), 1e-2)
    tradeoffs = [0.0] + list(np.geomspace(1e-3, top, args.tradeoffs - 1))
    audio_only = [j for j, m in enumerate(policy.modalities) if m == ["audio"]]
    thresholds = [None] + sorted({round(float(q), 4) for q in np.quantile(scores[:, audio_only], [0.1, 0.25, 0.5])}
                                 if audio_only else set())
    candidates = []
    for tradeoff in tradeoffs:
        for threshold in thresholds:
            point = OperatingPoint(float(tradeoff), threshold, 0.0, 0.0)
            e, t = simulate(policy, posterior, point, errors, tokens, scores)
            candidates.append(OperatingPoint(float(tradeoff), threshold, round(t / seconds.sum(), 3),
                                             round(100 * e / words.sum(), 3)))
    policy.points = pareto(candidates)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    policy.save(args.output)
    for p in policy.points:
        logging.info(f"tradeoff {p.tradeoff:.4g}, threshold {p.threshold}: "
                     f"{p.tokens_per_sec:.2f} tokens/s, WER {p.wer:.2f}% on {policy.fit_set}")
    logging.info(f"wrote {args.output}")


if __name__ == "__main__":
    main()

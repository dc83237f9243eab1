"""Evaluation: protocol P (the study's files), protocol C (this project's artifacts), runs, reports.

- :mod:`~stliif.evaluation.results`: result types, paired deltas, metric definitions.
- :mod:`~stliif.evaluation.paper`: protocol P, the study's evaluation reproduced exactly.
- :mod:`~stliif.evaluation.clean`: protocol C, built from the ETL's artifacts.
- :mod:`~stliif.evaluation.run`: a model against every baseline; committed evaluations.
- :mod:`~stliif.evaluation.report`: markdown reports, table rows and figures.

Metrics (PSNR, SSIM, cPSNR) live in :mod:`stliif.metrics`, models and baselines in
:mod:`stliif.models`; this package depends on both and on nothing that trains or renders.
"""

from stliif.evaluation.clean import (
    BAND_METRICS,
    CleanSample,
    evaluate_clean,
    fit_colour_map_clean,
    load_clean_sample,
    match_target,
    score_clean,
)
from stliif.evaluation.paper import (
    PAPER_SCALES,
    PAPER_TEST_AOIS,
    PaperSample,
    evaluate_paper,
    fit_colour_map_paper,
    load_paper_sample,
    load_paper_samples,
    paper_aois,
    paper_train_aois,
    score_image,
)
from stliif.evaluation.results import (
    CLEAN_METRICS,
    DEFINITIONS,
    PAPER_METRICS,
    EvalResult,
    Evaluation,
    PairedDelta,
    PredictionEvent,
    paired_deltas,
)
from stliif.evaluation.run import (
    EvaluationRun,
    evaluate_protocol,
    evaluation_key,
    evaluation_plan,
    metrics_path,
    run_evaluation,
    save_prediction,
)

__all__ = [
    "BAND_METRICS",
    "CLEAN_METRICS",
    "DEFINITIONS",
    "PAPER_METRICS",
    "PAPER_SCALES",
    "PAPER_TEST_AOIS",
    "CleanSample",
    "EvalResult",
    "Evaluation",
    "EvaluationRun",
    "PairedDelta",
    "PaperSample",
    "PredictionEvent",
    "evaluate_clean",
    "evaluate_paper",
    "evaluate_protocol",
    "evaluation_key",
    "evaluation_plan",
    "fit_colour_map_clean",
    "fit_colour_map_paper",
    "load_clean_sample",
    "load_paper_sample",
    "load_paper_samples",
    "match_target",
    "metrics_path",
    "paired_deltas",
    "paper_aois",
    "paper_train_aois",
    "run_evaluation",
    "save_prediction",
    "score_clean",
    "score_image",
]

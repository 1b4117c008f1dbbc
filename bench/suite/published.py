"""Published test accuracies of InceptionTime and FCN on the archives' own train/test splits.

None: no figure published for that archive (the table prints "–"). Sources, all read from the
authors' result files (accuracy, not error), rounded to three decimals:

- InceptionTime, univariate: Ismail Fawaz et al. 2020, "InceptionTime: Finding AlexNet for time
  series classification", DMKD 34(6); github.com/hfawaz/InceptionTime
  `results-InceptionTime-128.csv` (the ensemble of five networks on the UCR 2018 archive, the
  version sktime ships). The paper's own table (UCR 2015 archive, `results-InceptionTime-85.csv`)
  gives ArrowHead 0.829, GunPoint 1.000, ItalyPowerDemand 0.968, OSULeaf 0.934.
- InceptionTime, BasicMotions: Ruiz et al. 2021, "The great multivariate time series
  classification bake off", DMKD 35(2); github.com/time-series-machine-learning/tsml-eval
  `results/tsml/MultivariateDefaultTrainTest.csv` (the default split). The bake off used the 26
  equal-length UEA archives only, so JapaneseVowels has no figure there; the 0.992 once in
  hfawaz/InceptionTime `results-mts.csv` (commit 0d623a3) was withdrawn by its authors
  (file deleted and its link commented out in commit 365ce4d), so it is not used.
- FCN, univariate: Ismail Fawaz et al. 2019, "Deep learning for time series classification: a
  review", DMKD 33(4), their re-implementation of Wang et al. 2017's FCN; github.com/hfawaz/
  dl-4-tsc `results/results-ucr-128.csv`, the mean of its five runs on the UCR 2018 archive.
  (Wang et al. 2017 covered 44 UCR 2015 archives, not ArrowHead, ACSF1 or PLAID; the review's
  UCR 2015 table, `results/results-uea-avg-std.csv`, gives ArrowHead 0.843, GunPoint 1.000,
  ItalyPowerDemand 0.961, OSULeaf 0.977.)
- FCN, JapaneseVowels: the same review, `results/results-mts-avg-std.csv` (mean of ten runs,
  Baydogan's MTS archive version of the same split). No FCN figure is published for
  BasicMotions (it is in neither the review nor the bake off).
"""

from __future__ import annotations

# archive: (InceptionTime, FCN)
PUBLISHED: dict[str, tuple[float | None, float | None]] = {
    "ACSF1": (0.920, 0.898),
    "ArrowHead": (0.846, 0.843),
    "BasicMotions": (1.000, None),
    "GunPoint": (1.000, 1.000),
    "ItalyPowerDemand": (0.965, 0.963),
    "JapaneseVowels": (None, 0.993),
    "OSULeaf": (0.942, 0.979),
    "PLAID": (0.944, 0.904),
}

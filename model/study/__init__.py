"""Experiments over the model, and reading their results: sweeps (:mod:`.sweep`), sensitivity
screens (:mod:`.sensitivity`), calibration to the SPEC's targets (:mod:`.calibrate`,
:mod:`.validation`, ``targets.toml``, ``calibration.toml``) and its ensemble (:mod:`.ensemble`),
paired effects (:mod:`.effects`), the risk engine's trade-off (:mod:`.tradeoff`), reports
(:mod:`.report`) and what a small world cannot show (:mod:`.small_world`)."""

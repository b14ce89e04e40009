"""The applications: the command line (:mod:`.cli`), the dashboard (:mod:`.dashboard`) over a
live session (:mod:`.live`), the benchmarks (:mod:`.bench`) and the docs generator (:mod:`.docs`)."""

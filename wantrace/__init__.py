"""wantrace: what does a Wan2.1 generation cost, exactly, where, and why.

The machinery follows the data's path, one subpackage per stage; a stage imports only the stages above it in
this list (never below, never in a circle), the rule book and the model:

- `work`: what the work is: the FX trace on meta, workloads, categories and roles, the report, compare, sweep;
- `timing`: how long that work takes on a GPU: kernel tiles (and hardware profiles, the predictor);
- `measure`: measuring it for real: verify, the module probe, hardware counters (and calibration);
- `views`: what a person reads: the tree, hotspot tables, markdown, plots, number formatting;
- `cli`: the `wantrace` command line, over all of them.

Each subpackage's docstring ends with the line `May import:` naming what it may import;
tests/test_layout.py holds the code to it."""

__version__ = "0.1.0"

"""Hardware profiles, one JSON file per GPU (installed as `wantrace.hardware`, so they travel with the package).

Spec figures each carry their source; `calibrated` holds what `wantrace calibrate` measured on that GPU, or
is null for a spec-only profile, which names in `assume_from` the calibrated profile whose efficiencies and
overheads it borrows. The format is in docs/time-model.md; wantrace/timing/profile.py reads and checks it."""

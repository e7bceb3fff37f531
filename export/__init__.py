"""Export of trained PC-NAS models for serving: see `export_lib` (over `spec`, `writers` and `predictors`)
and the `export_main` binary."""

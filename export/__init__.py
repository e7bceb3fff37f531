"""Export of trained PC-NAS models for serving: see `export_lib` and the `export_main` binary."""

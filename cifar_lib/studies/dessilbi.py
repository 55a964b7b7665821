"""DessiLBI study (report section 3): experiments, tables and values."""

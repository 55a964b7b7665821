"""BatchNorm study (report section 2): experiments, tables and values."""

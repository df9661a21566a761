"""gbench's built-in benchmark suites (TOML files beside this one)."""

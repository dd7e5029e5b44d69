"""Everything that writes SQL or touches a database driver lives in this package."""

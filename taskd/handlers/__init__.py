"""HTTP handlers; each module ends with its route list."""

"""Private helpers shared by every saelab package: atomic writes, paths, the default device,
finding a browser, the JSON round-trip of config dataclasses, stable keys (hashes, model
identity) and hook-name parsing. Imports nothing from the rest of saelab."""

"""The methods being compared: the seed's commands, pgBackRest and this collection (engine and role)."""

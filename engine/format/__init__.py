"""Procedure files to a validated Procedure: YAML reading, the model, params, static checks, expressions, the schema and the graph. Nothing here runs anything."""

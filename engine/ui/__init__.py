"""Listeners of the event stream: the console and the report directory."""

"""Benchmarks: scripts measuring runproc beside its floors and its peers (never part of the tests).

A package so that bench/compare.py (behind ``bench/run``) and the tests can import the
workloads the other scripts already define, rather than copying them.
"""

"""Looking at the results: query, library QA, reports and exports to DJ software.

Readers of a results folder that never load the whole dataset at once (pyarrow
dataset scans with column and row filters), for the command line, notebooks
and exports.
"""

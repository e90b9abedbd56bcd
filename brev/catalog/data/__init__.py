"""The catalog's CSV files and their provenance (SOURCE.md); see brev.catalog.offers.

A package, not a plain folder, because setuptools deprecates shipping data from folders that
are not listed as packages.
"""

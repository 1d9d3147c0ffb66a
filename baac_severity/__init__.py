"""Severity of road accidents in France from the BAAC open data: a reproducible MLOps project.

Layers, each importing only from the ones before it::

    config, data  <-  features  <-  modeling  <-  decisions, monitoring  <-  serving, dashboard

``stages`` holds one thin module per DVC stage (``dvc.yaml``); ``cli`` is the command line.
Importing the package loads nothing heavy: each module is imported where it is used.
"""

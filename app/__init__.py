"""The applications on top of the pipeline: the BentoML prediction service (``app.service``)
and the Streamlit dashboard. Importing the package loads nothing: each module is an entry point.
"""

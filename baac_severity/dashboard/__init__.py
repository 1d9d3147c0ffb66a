"""The Streamlit dashboard: experiments, monitoring and a prediction form."""
